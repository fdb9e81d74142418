"""What ``head_rates`` buys and costs after a ``fit`` (issue 10): the default copies
``(1.0, 0.1, 0.01)`` against ``head_lr`` alone (``head_rates=(1.0,)``).

1. Quickstart: digits, ``fit`` on 500 rows then 10 ``partial_fit`` of 100 rows;
   accuracy on the last 297 rows after ``fit`` and after each call, and the largest
   single drop (mean over seeds).
2. Switch: the same ``fit``, then 10 chunks whose labels all moved (``(y + 1) % 10``);
   held-out accuracy on the switched labels after each chunk (mean over seeds).
3. Cost: seconds per ``partial_fit`` call after a ``fit`` on 2,000 rows of
   ``make_drift_stream`` (20 features, 4 classes), at 32 and 2,000 rows per call; the
   two settings alternate in 7 rounds, CPU time, medians.

One torch thread (``torch.set_num_threads(1)``). Run::

    python benchmarks/bench_head_rates.py [--seeds 5] [--rounds 7]
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits

from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream

SETTINGS = {"head_rates=(1, 0.1, 0.01)": (1.0, 0.1, 0.01), "head_rates=(1,)": (1.0,)}


def curves(rates, seeds, switch: bool) -> np.ndarray:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    target = (y + 1) % 10 if switch else y
    out = []
    for seed in seeds:
        clf = OnlineFineTuneClassifier(random_state=seed, head_rates=rates).fit(X[:500], y[:500])
        accs = [clf.score(X[1500:], target[1500:])]
        for s in range(500, 1500, 100):
            clf.partial_fit(X[s : s + 100], target[s : s + 100])
            accs.append(clf.score(X[1500:], target[1500:]))
        out.append(accs)
    return np.array(out)


def cost(rounds: int) -> dict:
    X, y, _ = make_drift_stream(200_000, 20, 4, drift_points=(), random_state=0)
    out = {}
    for n, calls in ((32, 200), (2000, 5)):
        models = {
            name: OnlineFineTuneClassifier(random_state=0, head_rates=r).fit(X[:2000], y[:2000])
            for name, r in SETTINGS.items()
        }
        times = {name: [] for name in models}
        pos = 2000
        for r in range(rounds):
            order = list(models) if r % 2 else list(models)[::-1]
            for name in order:
                chunks = [
                    (X[pos + i * n : pos + (i + 1) * n], y[pos + i * n : pos + (i + 1) * n])
                    for i in range(calls)
                ]
                gc.collect()
                t = time.process_time()
                for c in chunks:
                    models[name].partial_fit(*c)
                times[name].append((time.process_time() - t) / calls)
            pos += calls * n
        out[n] = {name: float(np.median(t)) for name, t in times.items()}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    seeds = range(args.seeds)
    print(f"torch threads: 1; seeds 0-{args.seeds - 1}\n")
    print("| setting | after fit | after 1st call | end | largest drop | switch: 3 / 10 chunks |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rates in SETTINGS.items():
        c = curves(rates, seeds, switch=False)
        drop = np.max(c[:, :-1] - c[:, 1:], axis=1).mean()
        sw = curves(rates, seeds, switch=True).mean(0)
        m = c.mean(0)
        print(
            f"| {name} | {m[0]:.3f} | {m[1]:.3f} | {m[-1]:.3f} | {drop:.3f} | "
            f"{sw[3]:.3f} / {sw[-1]:.3f} |"
        )
    print("\n| rows per call | head_rates=(1, 0.1, 0.01) | head_rates=(1,) | ratio |")
    print("|---:|---:|---:|---:|")
    for n, t in cost(args.rounds).items():
        a, b = t["head_rates=(1, 0.1, 0.01)"], t["head_rates=(1,)"]
        print(f"| {n:,} | {a * 1e6:,.0f} µs | {b * 1e6:,.0f} µs | {a / b:.2f} |")


if __name__ == "__main__":
    main()
