"""What ``fresh_head`` buys and costs (issue 10, target 4): a head started from zero
at a concept change, which replaces the head once it predicts better, against the head
alone (``fresh_head=False``).

1. Switches: test-then-train from scratch (``classes`` given) on streams whose concept
   switches while the inputs stay alike: ``make_classification`` (10 features, 3 and 6
   classes) whose labels all move to the next class at row 6,000 of 12,000, and
   ``make_drift_stream`` (20 features, 4 classes) with abrupt drifts of severity 0.6
   and 1.0 at 1/3 and 2/3; chunks of 32, 100 and 1,000 rows. Prequential accuracy
   over the whole stream and over the 2,000 rows after the first switch.
2. No switch: the same from-scratch protocol on ``make_drift_stream`` without drift and
   with gradual drift (width 2,000), where a fresh head must not cost accuracy.
3. Fit, then stream: each of river's six generators of ``bench_defaults.py`` (10,000
   rows), a ``StandardScaler`` and ``fit`` on the first 2,000 rows, then
   test-then-train on the other 8,000 in chunks of 100 (the head has copies at several
   rates there, and a take-over replaces them all).
4. Cost: seconds per ``partial_fit`` while a fresh head learns (kept from taking over
   or ending), at 32 and 2,000 rows per call, against a model without one (CPU time,
   medians of alternating rounds). A fresh head learns for at most ``PATIENCE`` chunks.

Mean over ``--seeds`` seeds (``random_state`` and the streams' seeds). One torch thread
(``torch.set_num_threads(1)``). Run::

    python benchmarks/bench_fresh_head.py [--seeds 5] [--rounds 7] [--no-cost]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from bench_defaults import STREAMS, river_rows
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream

SETTINGS = {"fresh_head=True": True, "fresh_head=False": False}
AFTER = 2000  # rows after the first switch that the second figure covers


def switched_classes(n_classes: int, seed: int):
    X, y = make_classification(
        12_000, 10, n_informative=6, n_classes=n_classes, n_clusters_per_class=1,
        random_state=seed,
    )  # fmt: skip
    return X, np.where(np.arange(len(y)) >= 6000, (y + 1) % n_classes, y), 6000


def drift_stream(severity: float | None, seed: int, kind: str = "abrupt"):
    points = () if severity is None else (1 / 3, 2 / 3)
    X, y, drifts = make_drift_stream(
        12_000, 20, 4, drift_points=points, kind=kind, width=2000,
        severity=severity or 0.6, random_state=seed,
    )  # fmt: skip
    return X, y, int(drifts[0]) if len(drifts) else None


STREAMS_FROM_SCRATCH = {
    "labels moved, 3 classes": lambda s: switched_classes(3, s),
    "labels moved, 6 classes": lambda s: switched_classes(6, s),
    "abrupt, severity 0.6": lambda s: drift_stream(0.6, s),
    "abrupt, severity 1.0": lambda s: drift_stream(1.0, s),
    "no drift": lambda s: drift_stream(None, s),
    "gradual, severity 0.6": lambda s: drift_stream(0.6, s, "gradual"),
}


def prequential(clf, X, y, chunk: int) -> np.ndarray:
    clf.partial_fit(X[:chunk], y[:chunk], classes=np.unique(y))
    right = np.zeros(len(y), dtype=bool)
    for s in range(chunk, len(y), chunk):
        right[s : s + chunk] = clf.predict(X[s : s + chunk]) == y[s : s + chunk]
        clf.partial_fit(X[s : s + chunk], y[s : s + chunk])
    return right


def from_scratch(seeds) -> dict:
    out = {}
    for name, make in STREAMS_FROM_SCRATCH.items():
        for chunk in (32, 100, 1000):
            for label, fresh in SETTINGS.items():
                whole, after, takeovers = [], [], 0
                for seed in seeds:
                    X, y, switch = make(seed)
                    clf = OnlineFineTuneClassifier(random_state=seed, fresh_head=fresh)
                    right = prequential(clf, X, y, chunk)
                    whole.append(right[chunk:].mean())
                    if switch is not None:
                        after.append(right[switch : switch + AFTER].mean())
                    takeovers += clf.fresh_heads_
                out[name, chunk, label] = (
                    float(np.mean(whole)), float(np.mean(after)) if after else None, takeovers
                )  # fmt: skip
    return out


def fit_then_stream(seeds) -> dict:
    out = {}
    for name in STREAMS:
        for label, fresh in SETTINGS.items():
            accs, takeovers = [], 0
            for seed in seeds:
                X, y = river_rows(name, 10_000, seed)[1:]
                X = StandardScaler().fit(X[:2000]).transform(X)
                clf = OnlineFineTuneClassifier(random_state=seed, fresh_head=fresh)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(X[:2000], y[:2000])
                right = []
                for s in range(2000, len(y), 100):
                    right.append(clf.predict(X[s : s + 100]) == y[s : s + 100])
                    clf.partial_fit(X[s : s + 100], y[s : s + 100])
                accs.append(float(np.concatenate(right).mean()))
                takeovers += clf.fresh_heads_
            out[name, label] = (float(np.mean(accs)), takeovers)
    return out


def cost(rounds: int) -> dict:
    """Per-call time with a fresh head learning against the same model without one."""
    X, y, switch = switched_classes(3, 0)
    out = {}
    for n, calls in ((32, 100), (2000, 4)):
        learning = OnlineFineTuneClassifier(random_state=0, fresh_head=True)
        learning.partial_fit(X[:100], y[:100], classes=np.arange(3))
        s = 100
        while not learning.learner_.fresh.active:
            learning.partial_fit(X[s : s + 100], y[s : s + 100])
            s += 100
        # The fresh head keeps learning: it neither takes over nor ends in these calls.
        learning.learner_.fresh.decide = lambda: False
        alone = OnlineFineTuneClassifier(random_state=0, fresh_head=False)
        alone.partial_fit(X[:s], y[:s], classes=np.arange(3))
        for _ in range(3):
            alone.partial_fit(X[:s], y[:s])
        models = {"fresh head learning": learning, "head alone": alone}
        times = {name: [] for name in models}
        for r in range(rounds):
            for name in list(models)[:: 1 if r % 2 else -1]:
                t = time.process_time()
                for i in range(calls):
                    start = (i * n) % (len(y) - n)
                    models[name].partial_fit(X[start : start + n], y[start : start + n])
                times[name].append((time.process_time() - t) / calls)
        assert learning.learner_.fresh.active
        out[n] = {name: float(np.median(t)) for name, t in times.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-cost", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = range(args.seeds)
    print(f"torch threads = {torch.get_num_threads()}; seeds {list(seeds)}\n")

    print("## 1-2. From scratch: prequential accuracy, whole stream / 2,000 rows after the "
          "first switch (take-overs over all seeds)\n")  # fmt: skip
    res = from_scratch(seeds)
    labels = list(SETTINGS)
    print("| stream | chunk | " + " | ".join(labels) + " |")
    print("|---|---:|" + "---|" * len(labels))
    for name in STREAMS_FROM_SCRATCH:
        for chunk in (32, 100, 1000):
            cells = []
            for label in labels:
                whole, after, n = res[name, chunk, label]
                cells.append(
                    f"{whole:.3f}" + ("" if after is None else f" / {after:.3f}") + f" ({n})"
                )
            print(f"| {name} | {chunk} | " + " | ".join(cells) + " |")
    for label in labels:
        print(f"\nmean, {label}: {np.mean([v[0] for k, v in res.items() if k[2] == label]):.4f}")

    print("\n## 3. Fit on 2,000 rows, then stream (river's generators, 10,000 rows)\n")
    fit = fit_then_stream(seeds)
    print("| setting | " + " | ".join(STREAMS) + " | mean |")
    print("|---|" + "---:|" * (len(STREAMS) + 1))
    for label in labels:
        vals = [fit[name, label] for name in STREAMS]
        print(f"| {label} | " + " | ".join(f"{a:.3f} ({n})" for a, n in vals)
              + f" | {np.mean([a for a, _ in vals]):.4f} |")  # fmt: skip

    if not args.no_cost:
        print("\n## 4. Seconds per partial_fit call (CPU time, medians)\n")
        for n, times in cost(args.rounds).items():
            a, b = times["fresh head learning"], times["head alone"]
            print(f"- {n} rows: fresh head learning {a * 1e6:,.0f} µs, head alone "
                  f"{b * 1e6:,.0f} µs ({a / b:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
