"""How many of a large chunk's rows the head's fine-tune needs (issue 10, target 2a):
the most rows of a chunk the head learns from, a uniform sample of a larger chunk
(``skocl._learner.head_budget``: ``HEAD_ROWS_PER_CLASS`` rows per class, at least
``HEAD_ROWS_MIN``, at most ``HEAD_ROWS``).

Streams of 150,000 rows in chunks of 10,000, test-then-train with the defaults
(prequential accuracy on every chunk but the first), for each budget:

- ``make_drift_stream`` (20 features, 4 classes) with an abrupt drift at half, and
  with a gradual one (width 20,000);
- ``make_classification`` (20 features, 10 informative, 10 and 6 classes), stationary;
- river's ``Hyperplane`` (10 features, incremental drift) and ``RandomTree``.

It prints the prequential accuracy per stream (mean over seeds), its mean, and the CPU
seconds of ``partial_fit`` per 10,000-row call (median). One torch thread. Run::

    python benchmarks/bench_head_budget.py [--seeds 2] [--budgets 0,4096,2048,1024,512,rule]

(a number: that many rows whatever the classes, 0 none, the whole chunk; ``rule``: the
default, ``head_budget``.)
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from river.datasets import synth
from sklearn.datasets import make_classification

import skocl._learner as learner_module
from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream

N_ROWS, CHUNK = 150_000, 10_000


def river_stream(gen, n):
    rows = [next(gen) for _ in range(n)]
    keys = list(rows[0][0])
    X = np.array([[float(x[k]) for k in keys] for x, _ in rows], dtype=np.float32)
    return X, np.array([int(t) for _, t in rows])


def streams(seed: int) -> dict:
    out = {}
    X, y, _ = make_drift_stream(N_ROWS, 20, 4, drift_points=(0.5,), random_state=seed)
    out["drift, abrupt"] = (X, y)
    X, y, _ = make_drift_stream(
        N_ROWS, 20, 4, drift_points=(0.5,), kind="gradual", width=20_000, random_state=seed
    )
    out["drift, gradual"] = (X, y)
    X, y = make_classification(N_ROWS, 20, n_informative=10, n_classes=10, random_state=seed)
    out["stationary, 10 classes"] = (X.astype(np.float32), y)
    X, y = make_classification(N_ROWS, 20, n_informative=10, n_classes=6, random_state=seed)
    out["stationary, 6 classes"] = (X.astype(np.float32), y)
    out["Hyperplane"] = river_stream(
        iter(synth.Hyperplane(seed=seed, n_features=10, mag_change=0.001)), N_ROWS
    )
    out["RandomTree"] = river_stream(
        iter(synth.RandomTree(seed_tree=seed, seed_sample=seed)), N_ROWS
    )
    return out


def prequential(X, y, seed: int) -> tuple[float, list]:
    clf = OnlineFineTuneClassifier(random_state=seed)
    classes = np.unique(y)
    right, secs = [], []
    for s in range(0, len(y), CHUNK):
        Xc, yc = X[s : s + CHUNK], y[s : s + CHUNK]
        if s:
            right.append(clf.predict(Xc) == yc)
        t = time.process_time()
        clf.partial_fit(Xc, yc, classes=classes if not s else None)
        secs.append(time.process_time() - t)
    return float(np.concatenate(right).mean()), secs[1:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budgets", default="0,4096,2048,1024,512,rule")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    budgets = [b if b == "rule" else int(b) for b in args.budgets.split(",")]
    default = learner_module.HEAD_ROWS, learner_module.HEAD_ROWS_MIN
    data = {seed: streams(seed) for seed in range(args.seeds)}
    names = list(data[0])
    print(f"torch threads: 1; seeds 0-{args.seeds - 1}; {N_ROWS:,} rows in chunks of {CHUNK:,}\n")
    print("| rows | " + " | ".join(names) + " | mean | s per call |")
    print("|---|" + "---:|" * (len(names) + 2))
    for budget in budgets:
        if budget == "rule":
            learner_module.HEAD_ROWS, learner_module.HEAD_ROWS_MIN = default
        else:  # the same number whatever the classes
            learner_module.HEAD_ROWS = learner_module.HEAD_ROWS_MIN = budget or 1 << 62
        accs, secs = {n: [] for n in names}, []
        for seed in data:
            for name in names:
                acc, s = prequential(*data[seed][name], seed)
                accs[name].append(acc)
                secs += s
        means = [float(np.mean(accs[n])) for n in names]
        cells = " | ".join(f"{m:.4f}" for m in means)
        label = budget or "none (whole chunk)"
        if budget == "rule":
            label = (
                f"rule: {learner_module.HEAD_ROWS_PER_CLASS} a class, {default[1]} to {default[0]}"
            )
        print(f"| {label} | {cells} | {np.mean(means):.4f} | {np.median(secs):.4f} |")


if __name__ == "__main__":
    main()
