"""The online learning rate of a sparse first layer: ``trunk_lr`` swept over sparse
streams and seeds (how ``trunk_lr="auto"`` was chosen for sparse input).

Three generated or bundled sparse streams, three seeds each, learned test-then-train
with ``partial_fit`` only (no ``fit``), everything else at its default:

* ``digits-csr``: scikit-learn's digits (scaled to [0, 1]) as a CSR matrix, chunks of
  100, shuffled by the seed: dense-like rows of 64 columns;
* ``binned-onehot``: ``make_classification`` (20 features, 4 classes) one-hot encoded by
  ``KBinsDiscretizer`` (10 quantile bins a feature): 200 columns, 20 non-zeros a row;
* ``bag-of-words``: generated documents of 5-30 words over 5,000 columns, each class
  drawing most words from its own block (``tests/test_sparse_estimator.bag_of_words``).

The docstring corpus at ``2**20`` hashed columns is swept by ``bench_text.py``
(``--shuffle`` and ``--skocl-params``; see TEXT.md). Reports the mean prequential and
held-out (last 20%) accuracy over the seeds, with ``SGDClassifier(loss="log_loss")``
alongside. Torch threads 1::

    .venv/bin/python benchmarks/sweep_sparse_trunk_lr.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import KBinsDiscretizer

from skocl import OnlineFineTuneClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_sparse_estimator import bag_of_words  # noqa: E402

RATES = [0.001, 0.01, 0.02, 0.05, 0.1, 0.2]


def streams(seed):
    X, y = load_digits(return_X_y=True)
    order = np.random.RandomState(seed).permutation(len(y))
    yield "digits-csr", sp.csr_matrix(X[order] / 16), y[order], 100
    X, y = make_classification(4000, 20, n_informative=10, n_classes=4, random_state=seed)
    bins = KBinsDiscretizer(n_bins=10, encode="onehot", strategy="quantile")
    yield "binned-onehot", sp.csr_matrix(bins.fit_transform(X)), y, 200
    X, y = bag_of_words(3000, seed=seed)
    yield "bag-of-words", X, y, 200


def prequential(clf, X, y, chunk):
    cut = int(0.8 * len(y))
    classes = np.unique(y)
    correct = tested = 0
    for s in range(0, cut, chunk):
        Xc, yc = X[s : s + chunk], y[s : s + chunk]
        if s:
            correct += int((clf.predict(Xc) == yc).sum())
            tested += len(yc)
        clf.partial_fit(Xc, yc, classes=classes)
    return correct / tested, clf.score(X[cut:], y[cut:])


def main():
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    results = {}
    for seed in range(3):
        for name, X, y, chunk in streams(seed):
            for lr in [*RATES, "SGD"]:
                if lr == "SGD":
                    clf = SGDClassifier(loss="log_loss", random_state=0)
                else:
                    clf = OnlineFineTuneClassifier(trunk_lr=lr, random_state=0)
                results.setdefault((name, lr), []).append(prequential(clf, X, y, chunk))
    print("| stream | trunk_lr | prequential | held-out |")
    print("|---|---|---:|---:|")
    for (name, lr), scores in results.items():
        preq, test = np.mean(scores, axis=0)
        print(f"| {name} | {lr} | {preq:.3f} | {test:.3f} |")


if __name__ == "__main__":
    main()
