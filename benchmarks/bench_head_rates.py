"""What ``head_rates`` buys and costs after a ``fit`` (issue 10): the default candidates
``(1.0, 0.1, 0.01, "lda")`` against the copies alone (``(1.0, 0.1, 0.01)``) and
``head_lr`` alone (``head_rates=(1.0,)``); an entry ``lda`` on the command line is the
closed-form candidate.

1. Quickstart: digits, ``fit`` on 500 rows then 10 ``partial_fit`` of 100 rows;
   accuracy on the last 297 rows after ``fit`` and after each call, and the largest
   single drop (mean over seeds).
2. Switch: the same ``fit``, then 10 chunks whose labels all moved (``(y + 1) % 10``);
   held-out accuracy on the switched labels after each chunk (mean over seeds).
3. Stationary, another stream: ``make_drift_stream`` without drift (20 features, 4
   classes), ``fit`` on 2,000 rows, then 20 ``partial_fit`` of 100 rows; accuracy on
   2,000 held-out rows, largest single drop and end (mean over seeds).
4. Fit, then stream: each of river's six generators of ``bench_defaults.py`` (10,000
   rows, concept switches included), a ``StandardScaler`` and ``fit`` on the first
   2,000 rows, then test-then-train on the other 8,000 in chunks of 100; prequential
   accuracy (mean over seeds), and how many of the fits converged (a fit that stops at
   ``max_iter`` keeps one rate, so both settings are the same there).
5. Cost: seconds per ``partial_fit`` call after a ``fit`` on 2,000 rows of
   ``make_drift_stream`` (20 features, 4 classes), at 32 and 2,000 rows per call, the
   trunk ``--widths`` wide (256, the default's, unless given); the two settings
   alternate in 7 rounds on the same chunks, CPU time, medians.

One torch thread (``torch.set_num_threads(1)``). Run::

    python benchmarks/bench_head_rates.py [--seeds 5] [--rounds 7] [--river-seeds 3]
        [--rates 1,0.1,0.01,lda 1,0.1,0.01 1] [--decay 0.5] [--switch-z 1] [--no-cost]
        [--only-cost --widths 256,512,1024]

``--decay`` and ``--switch-z`` set the rule's constants (``skocl._head_rates.DECAY``
and ``SWITCH_Z``) for the run, ``--shrinkage`` the closed-form candidate's
(``skocl._lda_head.SHRINKAGE``): how they were chosen.
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings

import numpy as np
import torch
from bench_defaults import STREAMS, river_rows
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skocl import OnlineFineTuneClassifier, _head_rates, _lda_head
from skocl.datasets import make_drift_stream


def settings(specs) -> dict:
    """``["1,0.1,0.01", "1"]`` -> the settings' names and ``head_rates``."""
    out = {}
    for spec in specs:
        rates = tuple(r if r == "lda" else float(r) for r in spec.split(","))
        names = [repr(r) if isinstance(r, str) else f"{r:g}" for r in rates]
        out[f"head_rates=({', '.join(names)}{',' if len(rates) == 1 else ''})"] = rates
    return out


def curve(rates, seed, X, y, target, fit: int, stop: int) -> list:
    """Held-out accuracy (on the rows from ``stop`` on, labelled ``target``) after a
    ``fit`` on the first ``fit`` rows and after each 100-row ``partial_fit`` up to
    ``stop`` (labelled ``target``)."""
    clf = OnlineFineTuneClassifier(random_state=seed, head_rates=rates).fit(X[:fit], y[:fit])
    accs = [clf.score(X[stop:], target[stop:])]
    for s in range(fit, stop, 100):
        clf.partial_fit(X[s : s + 100], target[s : s + 100])
        accs.append(clf.score(X[stop:], target[stop:]))
    return accs


def curves(rates, seeds, switch: bool) -> np.ndarray:
    X, y = load_digits(return_X_y=True)
    target = (y + 1) % 10 if switch else y
    return np.array([curve(rates, seed, X / 16.0, y, target, 500, 1500) for seed in seeds])


def stationary(rates, seeds) -> np.ndarray:
    X, y, _ = make_drift_stream(6_000, 20, 4, drift_points=(), random_state=0)
    return np.array([curve(rates, seed, X, y, y, 2000, 4000) for seed in seeds])


def fit_then_stream(rates, seeds, cache: dict) -> dict:
    out = {}
    for name in STREAMS:
        accs, converged = [], 0
        for seed in seeds:
            if (name, seed) not in cache:
                cache[name, seed] = river_rows(name, 10_000, seed)[1:]
            X, y = cache[name, seed]
            X = StandardScaler().fit(X[:2000]).transform(X)
            clf = OnlineFineTuneClassifier(random_state=seed, head_rates=rates)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf.fit(X[:2000], y[:2000])
            converged += not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            right = []
            for s in range(2000, len(y), 100):
                right.append(clf.predict(X[s : s + 100]) == y[s : s + 100])
                clf.partial_fit(X[s : s + 100], y[s : s + 100])
            accs.append(float(np.concatenate(right).mean()))
        out[name] = (float(np.mean(accs)), converged)
    return out


def cost(rounds: int, chosen: dict, width: int = 256) -> dict:
    X, y, _ = make_drift_stream(200_000, 20, 4, drift_points=(), random_state=0)
    out = {}
    for n, calls in ((32, 200), (2000, 5)):
        models = {
            name: OnlineFineTuneClassifier(
                random_state=0, head_rates=r, hidden_layer_sizes=(width,)
            ).fit(X[:2000], y[:2000])
            for name, r in chosen.items()
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
    parser.add_argument("--river-seeds", type=int, default=3)
    parser.add_argument(
        "--rates", nargs="+", default=["1,0.1,0.01,lda", "1,0.1,0.01", "1"],
        help="settings of head_rates to compare, e.g. 1,0.1,0.01 1 (the first two are timed)",
    )  # fmt: skip
    parser.add_argument("--no-cost", action="store_true", help="skip the timing")
    parser.add_argument("--only-cost", action="store_true", help="the timing alone")
    parser.add_argument(
        "--widths", default="256", help="trunk widths of the timing, e.g. 256,512,1024"
    )  # fmt: skip
    parser.add_argument("--decay", type=float, help="skocl._head_rates.DECAY for this run")
    parser.add_argument("--switch-z", type=float, help="skocl._head_rates.SWITCH_Z")
    parser.add_argument(
        "--shrinkage", type=float, help="skocl._lda_head.SHRINKAGE for this run"
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    seeds = range(args.seeds)
    chosen = settings(args.rates)
    if args.decay is not None:
        _head_rates.DECAY = args.decay
    if args.switch_z is not None:
        _head_rates.SWITCH_Z = args.switch_z
    if args.shrinkage is not None:
        _lda_head.SHRINKAGE = args.shrinkage
    print(f"DECAY = {_head_rates.DECAY}, SWITCH_Z = {_head_rates.SWITCH_Z}")
    print(f"SHRINKAGE = {_lda_head.SHRINKAGE}")
    print(f"torch threads: 1; seeds 0-{args.seeds - 1}\n")
    if not args.only_cost:
        quality(args, chosen, seeds)
    if args.no_cost or len(chosen) < 2:
        return
    first, second = list(chosen)[:2]
    print(f"\n| width | rows per call | {first} | {second} | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for width in (int(w) for w in args.widths.split(",")):
        timed = cost(args.rounds, {k: chosen[k] for k in (first, second)}, width)
        for n, t in timed.items():
            a, b = t[first], t[second]
            print(f"| {width} | {n:,} | {a * 1e6:,.0f} µs | {b * 1e6:,.0f} µs | {a / b:.2f} |")


def quality(args, chosen: dict, seeds) -> None:
    print("| setting | after fit | after 1st call | end | largest drop | switch: 3 / 10 chunks |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rates in chosen.items():
        c = curves(rates, seeds, switch=False)
        drop = np.max(c[:, :-1] - c[:, 1:], axis=1).mean()
        sw = curves(rates, seeds, switch=True).mean(0)
        m = c.mean(0)
        print(
            f"| {name} | {m[0]:.3f} | {m[1]:.3f} | {m[-1]:.3f} | {drop:.3f} | "
            f"{sw[3]:.3f} / {sw[-1]:.3f} |"
        )
    print("\nStationary make_drift_stream, fit on 2,000 rows then 20 calls of 100:\n")
    print("| setting | after fit | after 1st call | end | largest drop |")
    print("|---|---:|---:|---:|---:|")
    for name, rates in chosen.items():
        c = stationary(rates, seeds)
        drop = np.max(c[:, :-1] - c[:, 1:], axis=1).mean()
        m = c.mean(0)
        print(f"| {name} | {m[0]:.3f} | {m[1]:.3f} | {m[-1]:.3f} | {drop:.3f} |")
    river_seeds = range(args.river_seeds)
    print(f"\nFit on 2,000 rows, then prequential on 8,000 (seeds 0-{args.river_seeds - 1};")
    print("in brackets: fits that converged):\n")
    print("| setting | " + " | ".join(STREAMS) + " | mean |")
    print("|---|" + "---:|" * (len(STREAMS) + 1))
    cache: dict = {}
    for name, rates in chosen.items():
        res = fit_then_stream(rates, river_seeds, cache)
        cells = [f"{a:.3f} ({k})" for a, k in res.values()]
        mean = np.mean([a for a, _ in res.values()])
        print(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} |")


if __name__ == "__main__":
    main()
