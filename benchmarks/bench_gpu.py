"""Throughput of ``OnlineFineTuneClassifier`` on a GPU against the CPU, side by side.

Run from the repository root::

    python benchmarks/bench_gpu.py                  # cpu and cuda (cuda when there is one)
    python benchmarks/bench_gpu.py --devices cpu    # the CPU half alone (checks the script)
    python benchmarks/bench_gpu.py --quick          # short run, for a smoke test

Each case builds one model per device from the same seed and times the same calls on
each, in interleaved rounds (the device order alternates); the figure is the median
over rounds of rows per second. CUDA work is synchronised before a clock is read (the
calls end on a host read anyway). The CPU runs with ``--threads`` torch threads (by
default every core the process may use), the number the table reports.

Cases, on 100 float32 features and 10 classes (replay memory on, the default; drift
detection off, so that river is not needed):

* ``partial_fit`` on chunks of 256 and 4,096 rows, with the default network (one hidden
  layer of 256) and a wide one (two hidden layers of 2,048);
* ``predict_proba`` on 100,000 rows;
* ``fit`` on 50,000 rows, 2 epochs.

Results are printed as a markdown table and written to ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from skocl import OnlineFineTuneClassifier

N_FEATURES, N_CLASSES = 100, 10
NETWORKS = {"default (256)": (256,), "wide (2048, 2048)": (2048, 2048)}


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(N_CLASSES, N_FEATURES)).astype(np.float32)
    y = rng.integers(N_CLASSES, size=n)
    X = centers[y] + rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    return X, y


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def model(device, hidden, max_iter=2):
    return OnlineFineTuneClassifier(
        hidden_layer_sizes=hidden,
        max_iter=max_iter,
        drift_detector=None,
        device=device,
        random_state=0,
    )


def cases(quick):
    """(name, rows per call, setup(device) -> call)."""
    X, y = data(120_000 if not quick else 20_000)
    pretrain = 5_000 if not quick else 1_000
    out = []
    for net_name, hidden in NETWORKS.items():
        for n in (256, 4096):

            def setup(device, hidden=hidden, n=n):
                clf = model(device, hidden).fit(X[:pretrain], y[:pretrain])
                state = {"start": pretrain}

                def call():
                    s = state["start"]
                    if s + n > len(X):
                        s = pretrain
                    clf.partial_fit(X[s : s + n], y[s : s + n])
                    state["start"] = s + n

                return call

            out.append((f"`partial_fit` {n} rows, {net_name}", n, setup))
    n_pred = 100_000 if not quick else 10_000

    def setup_predict(device):
        clf = model(device, (256,)).fit(X[:pretrain], y[:pretrain])
        return lambda: clf.predict_proba(X[:n_pred])

    out.append((f"`predict_proba` {n_pred:,} rows, default (256)", n_pred, setup_predict))
    n_fit = 50_000 if not quick else 5_000

    def setup_fit(device):
        return lambda: model(device, (256,)).fit(X[:n_fit], y[:n_fit])

    out.append((f"`fit` {n_fit:,} rows x 2 epochs, default (256)", n_fit * 2, setup_fit))
    return out


def run(devices, rounds, calls, quick):
    results = []
    for name, rows, setup in cases(quick):
        calls_of = {d: setup(d) for d in devices}
        for d, call in calls_of.items():  # warm-up: kernels, allocator, first imports
            call()
            sync(d)
        times = {d: [] for d in devices}
        for r in range(rounds):
            order = devices if r % 2 == 0 else devices[::-1]
            for d in order:
                sync(d)
                t0 = time.perf_counter()
                for _ in range(calls):
                    calls_of[d]()
                sync(d)
                times[d].append((time.perf_counter() - t0) / calls)
        row = {"case": name, "rows_per_call": rows}
        for d in devices:
            row[d] = {"median_s": statistics.median(times[d]), "rows_per_s": 0.0}
            row[d]["rows_per_s"] = rows / row[d]["median_s"]
        results.append(row)
        print(table_row(row, devices), flush=True)
    return results


def table_row(row, devices):
    cells = [row["case"]]
    for d in devices:
        cells.append(f"{row[d]['rows_per_s']:,.0f} ({row[d]['median_s'] * 1e3:,.2f} ms)")
    if "cpu" in devices and "cuda" in devices:
        cells.append(f"{row['cuda']['rows_per_s'] / row['cpu']['rows_per_s']:.1f}x")
    return "| " + " | ".join(cells) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--devices", default=default_devices, help="comma-separated")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="calls per timed batch")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args()
    devices = args.devices.split(",")
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--devices names cuda, but CUDA is not available here")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # ConvergenceWarning of the 2-epoch fits
    if args.quick:
        args.rounds, args.calls = 2, 1

    gpu = torch.cuda.get_device_name() if "cuda" in devices else None
    header = [
        f"# bench_gpu ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)",
        f"torch {torch.__version__}, {args.threads} CPU thread(s), {platform.machine()}"
        + (f", GPU {gpu}" if gpu else ""),
        "",
        "| case | "
        + " | ".join(f"{d} rows/s (median per call)" for d in devices)
        + (" | cuda / cpu |" if len(devices) == 2 else " |"),
        "|---|" + "---:|" * (len(devices) + (len(devices) == 2)),
    ]
    print("\n".join(header), flush=True)
    results = run(devices, args.rounds, args.calls, args.quick)
    if not args.no_json:
        out = Path(__file__).parent / "results" / "gpu.json"
        meta = {"torch": torch.__version__, "threads": args.threads, "gpu": gpu}
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
