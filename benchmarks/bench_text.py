"""Text streams: wide sparse input learned chunk by chunk, against SGDClassifier.

The corpus is :func:`skocl.datasets.load_docstrings` (docstrings of skocl's installed
dependencies, labelled by package; offline), vectorised by
``HashingVectorizer(n_features=2**20, alternate_sign=False)`` one chunk of 1,000
documents at a time. The first 80% of the documents are the stream, the rest a held-out
test set. Each peer runs prequentially (every chunk after the first is predicted, then
learned) and reports:

* prequential accuracy over the stream, and accuracy on the held-out documents after it;
* time per document of the model (``partial_fit`` and ``predict``; vectorising, the same
  for every peer, is reported on its own);
* peak RSS of the process that ran it (each peer runs in its own child process, so the
  figure is that peer's whole process: Python, torch, the corpus and the model).

Peers:

* ``sgd``: ``SGDClassifier(loss="log_loss")``, scikit-learn's out-of-core text learner;
* ``floor``: a plain torch loop, ``SparseLinear(2**20, width) -> ReLU -> Linear(width,
  n_classes)`` trained with ``LazyAdam``, one pass over each chunk in shuffled
  mini-batches: the floor that skocl's integration of sparse input must reach;
* ``floor_replay``: the same loop with a ``SparseReplayMemory`` whose rows join every
  mini-batch (as many as the batch has), the shape of skocl's default update;
* ``skocl``: ``OnlineFineTuneClassifier`` with its defaults (or ``--skocl-params``, a
  JSON dict of parameters), learning each chunk with ``partial_fit``.

Run from the repository root, torch threads 1::

    nice -n 19 .venv/bin/python benchmarks/bench_text.py

Options select peers, the width of the first layer, the learning rate, the mini-batch
size and the number of documents (``--help``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

CHUNK = 1000
N_FEATURES = 2**20


def corpus(n_docs: int | None, shuffle: int = 0):
    from skocl.datasets import load_docstrings

    texts, labels = load_docstrings(random_state=shuffle)
    if n_docs:
        texts, labels = texts[:n_docs], labels[:n_docs]
    classes = np.unique(labels)
    y = np.searchsorted(classes, labels)
    split = int(0.8 * len(texts))
    return texts[:split], y[:split], texts[split:], y[split:], classes


def make_sgd(n_classes, args):
    from sklearn.linear_model import SGDClassifier

    clf = SGDClassifier(loss="log_loss", random_state=0)
    classes = np.arange(n_classes)
    return (lambda X, y: clf.partial_fit(X, y, classes=classes)), clf.predict


def make_floor(n_classes, args, replay: bool):
    import torch
    from torch import nn
    from torch.nn import functional as F

    from skocl._sparse import SparseLinear, csr_rows
    from skocl._sparse_optim import LazyAdam
    from skocl._sparse_replay import SparseReplayMemory

    torch.manual_seed(0)
    net = nn.Sequential(
        SparseLinear(N_FEATURES, args.width), nn.ReLU(), nn.Linear(args.width, n_classes)
    )
    opt = LazyAdam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(0)
    memory = (
        SparseReplayMemory(args.memory_size, "class_balanced", N_FEATURES, torch.float32, "cpu")
        if replay
        else None
    )

    def learn(X, y):
        yt = torch.from_numpy(y)
        order = torch.randperm(len(y), generator=gen)
        net.train()
        for lo in range(0, len(y), args.batch_size):
            idx = order[lo : lo + args.batch_size]
            xb, yb = csr_rows(X, idx), yt[idx]
            if memory is not None and len(memory):
                xb, yb, _ = memory.join_batch(xb, yb, None, memory.replays([len(yb)], gen)[0])
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
        if memory is not None:
            memory.add(csr_rows(X), yt, gen)

    @torch.no_grad()
    def predict(X):
        net.eval()
        return net(csr_rows(X)).argmax(1).numpy()

    return learn, predict


def make_skocl(n_classes, args):
    from skocl import OnlineFineTuneClassifier

    clf = OnlineFineTuneClassifier(random_state=0, **json.loads(args.skocl_params))
    classes = np.arange(n_classes)
    return (lambda X, y: clf.partial_fit(X, y, classes=classes)), clf.predict


def run_peer(peer: str, args) -> dict:
    import torch

    torch.set_num_threads(1)
    from sklearn.feature_extraction.text import HashingVectorizer

    texts, y, test_texts, y_test, classes = corpus(args.n_docs, args.shuffle)
    vec = HashingVectorizer(n_features=N_FEATURES, alternate_sign=False)
    # Once-per-process costs, paid here by every peer before timing: torch imports its
    # compiler stack (about 1.4 s) when a process builds its first optimizer, and skocl
    # imports skorch and river (the drift detector) on its first call.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    import river.drift  # noqa: F401
    import skorch  # noqa: F401

    import skocl._classifier  # noqa: F401

    t0 = time.perf_counter()  # building the model counts (the floor allocates here)
    if peer == "sgd":
        learn, predict = make_sgd(len(classes), args)
    elif peer == "skocl":
        learn, predict = make_skocl(len(classes), args)
    else:
        learn, predict = make_floor(len(classes), args, replay=peer == "floor_replay")
    t_vec, t_model = 0.0, time.perf_counter() - t0
    correct = tested = 0
    for lo in range(0, len(texts), CHUNK):
        t0 = time.perf_counter()
        X = vec.transform(texts[lo : lo + CHUNK])
        t1 = time.perf_counter()
        yc = y[lo : lo + CHUNK]
        if lo:
            correct += int((predict(X) == yc).sum())
            tested += len(yc)
        learn(X, yc)
        t_vec, t_model = t_vec + t1 - t0, t_model + time.perf_counter() - t1
    X_test = vec.transform(test_texts)
    test_acc = float((predict(X_test) == y_test).mean())
    return {
        "peer": peer,
        "docs": len(texts),
        "prequential": correct / tested,
        "test": test_acc,
        "us_per_doc": 1e6 * t_model / len(texts),
        "vectorise_us_per_doc": 1e6 * t_vec / len(texts),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="sgd,floor,floor_replay,skocl")
    parser.add_argument(
        "--skocl-params", default="{}", help="JSON dict of OnlineFineTuneClassifier parameters"
    )
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--memory-size", type=int, default=1000)
    parser.add_argument("--n-docs", type=int, default=0, help="first N documents (0: all)")
    parser.add_argument(
        "--shuffle", type=int, default=0, help="random_state of the corpus's order"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of every peer, interleaved; median time"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_peer(args.child, args)))
        return
    # Load (and cache) the corpus once before the children read it.
    corpus(args.n_docs, args.shuffle)
    forwarded = [
        f"--width={args.width}",
        f"--lr={args.lr}",
        f"--batch-size={args.batch_size}",
        f"--memory-size={args.memory_size}",
        f"--n-docs={args.n_docs}",
        f"--shuffle={args.shuffle}",
        f"--skocl-params={args.skocl_params}",
    ]
    runs: dict[str, list[dict]] = {peer: [] for peer in args.peers.split(",")}
    for _ in range(args.rounds):
        for peer in runs:
            out = subprocess.run(
                [sys.executable, __file__, *forwarded, "--child", peer],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(f"peer {peer} failed:\n{out.stderr}")
            runs[peer].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = []
    for rs in runs.values():
        # Accuracy is the same every round (seeded, one thread); time is the median.
        r = dict(rs[0])
        for key in ("us_per_doc", "vectorise_us_per_doc", "peak_rss_mb"):
            r[key] = float(np.median([x[key] for x in rs]))
        r["us_per_doc_rounds"] = [x["us_per_doc"] for x in rs]
        results.append(r)
    sgd = next((r for r in results if r["peer"] == "sgd"), None)
    print(
        f"width={args.width} lr={args.lr} batch={args.batch_size} "
        f"memory={args.memory_size} docs={results[0]['docs']} chunk={CHUNK} "
        f"n_features=2**20 rounds={args.rounds} shuffle={args.shuffle} "
        f"skocl_params={args.skocl_params}"
    )
    print(f"{'peer':14s} {'preq':>6s} {'test':>6s} {'us/doc':>8s} {'x SGD':>6s} {'RSS MB':>7s}")
    for r in results:
        ratio = r["us_per_doc"] / sgd["us_per_doc"] if sgd else float("nan")
        print(
            f"{r['peer']:14s} {r['prequential']:6.3f} {r['test']:6.3f} "
            f"{r['us_per_doc']:8.1f} {ratio:6.2f} {r['peak_rss_mb']:7.0f}"
        )
    print(f"vectorising: {np.mean([r['vectorise_us_per_doc'] for r in results]):.1f} us/doc")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
