"""The cost and accuracy of ``partial_fit`` after a concept change, for a model that
learns from scratch: at its first concept change the head's candidates start (one copy
at ``head_lr`` and the closed-form head; ``HeadRates.start_at_change``), and from then
on every call runs them (issue 10; DEFAULTS.md, "Candidates at a concept change").

Streams: ``make_classification`` (20 features, 10 informative, 4 classes, one cluster
per class) whose labels all move to the next class at row ``--switch``; one per seed.
Each model learns the rows before the change and 2,000 rows after it in chunks of 100,
then ``--calls`` calls of 32 rows are timed (CPU time, blocks of 10 calls, the models
interleaved block by block; medians). Reported beside the defaults: the same without
candidates (``head_rates=(1.0,)``) and ``SGDClassifier().partial_fit``, and each skocl
model's prequential accuracy over the timed calls.

One torch thread, BLAS at one thread::

    python benchmarks/bench_after_change.py              # 3 seeds
    python benchmarks/bench_after_change.py --seeds 1 --calls 300
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from skocl import OnlineFineTuneClassifier  # noqa: E402

SMALL, BLOCK = 32, 10


def stream(seed: int, n: int, switch: int):
    X, y = make_classification(
        n, 20, n_informative=10, n_classes=4, n_clusters_per_class=1, random_state=seed
    )
    return X, np.where(np.arange(n) >= switch, (y + 1) % 4, y)


def run(seed: int, switch: int, calls: int) -> dict:
    warm = switch + 2000
    X, y = stream(seed, warm + calls * SMALL, switch)
    models = {
        "defaults": OnlineFineTuneClassifier(random_state=seed),
        "no candidates (head_rates=(1.0,))": OnlineFineTuneClassifier(
            random_state=seed, head_rates=(1.0,)
        ),
        "SGDClassifier": SGDClassifier(random_state=seed),
    }
    for m in models.values():
        m.partial_fit(X[:100], y[:100], classes=np.arange(4))
        for s in range(100, warm, 100):
            m.partial_fit(X[s : s + 100], y[s : s + 100])
    started = bool(models["defaults"].learner_.rates.refresh)
    times = {k: [] for k in models}
    right = {k: 0 for k in models}
    for b in range(warm, warm + calls * SMALL, SMALL * BLOCK):
        chunks = [(X[s : s + SMALL], y[s : s + SMALL]) for s in range(b, b + SMALL * BLOCK, SMALL)]
        for k, m in models.items():
            t = time.process_time()
            for Xc, yc in chunks:
                m.partial_fit(Xc, yc)
            times[k].append((time.process_time() - t) / len(chunks))
        for k, m in models.items():  # prequential: the next block, before it is learned
            nxt = slice(b + SMALL * BLOCK, b + 2 * SMALL * BLOCK)
            if nxt.start < len(y):
                right[k] += int((m.predict(X[nxt]) == y[nxt]).sum())
    scored = len(y) - warm - SMALL * BLOCK
    return {
        "started": started,
        "us": {k: 1e6 * float(np.median(v)) for k, v in times.items()},
        "acc": {k: right[k] / scored for k in models},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--switch", type=int, default=4000)
    parser.add_argument("--calls", type=int, default=600)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"torch threads: {torch.get_num_threads()}; BLAS threads: 1; seeds 0-{args.seeds - 1}")
    with threadpool_limits(1):
        results = [run(seed, args.switch, args.calls) for seed in range(args.seeds)]
    names = list(results[0]["us"])
    print()
    print("| model | µs per 32-row call (median of seeds) | / no candidates | / SGD | "
          "prequential accuracy |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    us = {k: float(np.median([r["us"][k] for r in results])) for k in names}
    base, sgd = us[names[1]], us["SGDClassifier"]
    for k in names:
        acc = np.mean([r["acc"][k] for r in results])
        print(f"| {k} | {us[k]:,.0f} | {us[k] / base:.2f} | {us[k] / sgd:.2f} | {acc:.3f} |")
    print()
    print("candidates started at the change:", [r["started"] for r in results])


if __name__ == "__main__":
    main()
