"""The main job on embedded data: pretrain on part of sklearn's digits, then stream
the rest through ``partial_fit`` and print accuracy as it goes.

Run it with ``python -m skocl.demo``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ._classifier import OnlineFineTuneClassifier


def run(pretrain_size: int = 150, chunk_size: int = 50, random_state: int = 0) -> dict:
    """Pretrain, stream, and report held-out accuracy after each chunk."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_stream, X_test, y_stream, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=random_state
    )
    clf = OnlineFineTuneClassifier(max_iter=100, random_state=random_state)
    clf.fit(X_stream[:pretrain_size], y_stream[:pretrain_size])
    start = clf.score(X_test, y_test)
    print(f"pretrained on {pretrain_size} digits: held-out accuracy {start:.3f}")
    print(f"{'rows seen':>10} {'chunk acc':>10} {'held-out acc':>13}")
    t0 = time.perf_counter()
    for lo in range(pretrain_size, len(y_stream), chunk_size):
        Xc, yc = X_stream[lo : lo + chunk_size], y_stream[lo : lo + chunk_size]
        chunk_acc = clf.score(Xc, yc)  # test, then train: the chunk is unseen here
        clf.partial_fit(Xc, yc)
        print(f"{clf.n_samples_seen_:>10} {chunk_acc:>10.3f} {clf.score(X_test, y_test):>13.3f}")
    elapsed = time.perf_counter() - t0
    end = clf.score(X_test, y_test)
    print(
        f"held-out accuracy {start:.3f} -> {end:.3f} after streaming "
        f"{len(y_stream) - pretrain_size} rows in {elapsed:.2f} s"
    )
    return {"start": start, "end": end}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skocl.demo", description=__doc__)
    parser.add_argument("--pretrain-size", type=int, default=150)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    np.set_printoptions(precision=3)
    run(args.pretrain_size, args.chunk_size, args.random_state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
