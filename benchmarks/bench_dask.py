"""GridSearchCV on a dask LocalCluster against joblib's default backend, same machine.

Run from the repository root::

    python benchmarks/bench_dask.py             # 5 timed rounds
    python benchmarks/bench_dask.py --quick     # 2 rounds, a smaller grid
    python benchmarks/bench_dask.py --max-iter 40  # longer fits (default 10 epochs)
    python benchmarks/bench_dask.py --output FILE.md  # also write the report there

One search, three ways, on scikit-learn's digits (1,797 rows, 64 features, /16):
``GridSearchCV(OnlineFineTuneClassifier(max_iter=10 (--max-iter), drift_detector=None,
random_state=0), grid, cv=3, refit=False)`` with the grid ``lr`` in {1e-3, 3e-3, 1e-2}
x ``hidden_layer_sizes`` in {(32,), (128,)} (6 candidates, 18 fits; ``--quick``: 4
candidates, 12 fits). ``refit=False`` leaves out the final refit, which runs in the
calling process whatever the backend.

- **dask**: ``with joblib.parallel_config(backend="dask")`` on a ``LocalCluster(
  n_workers=2, threads_per_worker=1, processes=True)`` with
  ``skocl.dask.limit_torch_threads(client, n=1)``;
- **loky**: joblib's default backend, ``n_jobs=2`` (loky limits the workers' OpenMP
  threads to cores // n_jobs = 1, which torch reads when it starts);
- **sequential**: ``n_jobs=1`` in this process, ``torch.set_num_threads(1)``.

The cluster is started once (its start-up is timed apart) and each backend runs one
untimed warm-up search, which starts loky's workers and imports torch and skocl in
every worker. Then ``--rounds`` rounds each time one search per backend, the order
rotating from round to round; the table gives the median and p25-p75 of the
wall-clock seconds of ``search.fit``. Every search must find the same ``best_params_``
(checked). The machine's load average is printed before and after: on a shared
machine it moves the numbers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import warnings

import joblib
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, ParameterGrid

from skocl import OnlineFineTuneClassifier
from skocl.dask import limit_torch_threads

BACKENDS = ("dask", "loky", "sequential")


def make_search(quick: bool, max_iter: int) -> GridSearchCV:
    clf = OnlineFineTuneClassifier(max_iter=max_iter, drift_detector=None, random_state=0)
    lrs = [1e-3, 1e-2] if quick else [1e-3, 3e-3, 1e-2]
    grid = {"lr": lrs, "hidden_layer_sizes": [(32,), (128,)]}
    return GridSearchCV(clf, grid, cv=3, refit=False)


def run(backend: str, search: GridSearchCV, X, y) -> tuple[float, dict]:
    search = clone(search)
    if backend == "dask":
        context = joblib.parallel_config(backend="dask")
    elif backend == "loky":
        context = joblib.parallel_config(backend="loky", n_jobs=2)
    else:
        context = joblib.parallel_config(backend="sequential")
    with context, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a small max_iter on purpose
        start = time.perf_counter()
        search.fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, search.best_params_


def quantiles(samples: list[float]) -> tuple[float, float, float]:
    if len(samples) < 2:
        return samples[0], samples[0], samples[0]
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, statistics.median(samples), q3


def versions() -> str:
    import dask
    import distributed
    import sklearn

    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}, joblib {joblib.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 4 candidates")
    parser.add_argument("--max-iter", type=int, default=10, help="epochs of each fit")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)

    from distributed import Client, LocalCluster

    torch.set_num_threads(1)  # the sequential contender, and the client side of the others
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    search = make_search(args.quick, args.max_iter)
    n_candidates = len(ParameterGrid(search.param_grid))
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)

    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    limit_torch_threads(client, n=1)
    cluster_start = time.perf_counter() - t0

    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    warm: dict[str, float] = {}
    best: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    try:
        for backend in BACKENDS:  # warm-up: worker start-up and first imports
            warm[backend], params = run(backend, search, X, y)
            best[backend].append(params)
            print(f"warm-up {backend}: {warm[backend]:.2f} s", flush=True)
        for r in range(rounds):
            order = BACKENDS[r % 3 :] + BACKENDS[: r % 3]
            for backend in order:
                seconds, params = run(backend, search, X, y)
                times[backend].append(seconds)
                best[backend].append(params)
            print(
                f"round {r + 1}: " + ", ".join(f"{b} {times[b][-1]:.2f} s" for b in order),
                flush=True,
            )
    finally:
        t0 = time.perf_counter()
        client.close()
        cluster.close()
        cluster_stop = time.perf_counter() - t0
    load_after = os.getloadavg()

    all_best = [p for b in BACKENDS for p in best[b]]
    same_best = all(p == all_best[0] for p in all_best)
    seq_median = statistics.median(times["sequential"])
    rows = []
    for backend, label in (
        ("dask", "dask, LocalCluster 2 workers x 1 thread, torch threads 1"),
        ("loky", "loky (joblib default), n_jobs=2"),
        ("sequential", "sequential, n_jobs=1, torch threads 1"),
    ):
        q1, med, q3 = quantiles(times[backend])
        rows.append(
            f"| {label} | {med:.2f} | {q1:.2f}-{q3:.2f} | {seq_median / med:.2f} | "
            f"{warm[backend]:.2f} | {len(times[backend])} |"
        )
    report = "\n".join(
        [
            f"Command: `python benchmarks/bench_dask.py {' '.join(argv or sys.argv[1:])}`",
            f"Date: {started:%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores "
            f"({platform.machine()}, {platform.system()}), load average (1, 5, 15 min) "
            f"before {tuple(round(v, 1) for v in load_before)}, after "
            f"{tuple(round(v, 1) for v in load_after)}; {versions()}.",
            f"Search: {n_candidates} candidates x 3 folds = {3 * n_candidates} fits of "
            f"OnlineFineTuneClassifier(max_iter={args.max_iter}) on 1,797 x 64 digits "
            "(1,198 training rows per fit), refit=False.",
            f"Cluster start-up (LocalCluster + Client + limit_torch_threads): "
            f"{cluster_start:.2f} s; shutdown {cluster_stop:.2f} s.",
            f"Same best_params_ from every search: {same_best} ({all_best[0]}).",
            "",
            "| backend | median s | p25-p75 s | speed-up vs sequential | warm-up s | rounds |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print()
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report + "\n")
    if not same_best:
        sys.exit("The backends found different best_params_.")


if __name__ == "__main__":
    main()
