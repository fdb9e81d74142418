"""The main job on embedded data: a drifting stream learned online.

A generated stream (:func:`skocl.datasets.make_drift_stream`: a nonlinear concept that
changes abruptly twice) is learned test-then-train by skocl, by ``SGDClassifier`` and by
``MLPClassifier``, each pretrained on the same first rows. Prequential accuracy is
printed as it goes, then a table, and the learning curves are saved as a PNG.

Run it with ``skocl demo`` (or ``python -m skocl demo``).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.neural_network import MLPClassifier

from ._classifier import OnlineFineTuneClassifier
from .datasets import make_drift_stream
from .stream import iter_chunks, prequential

N_FEATURES = 6


def run(
    *,
    n_samples: int = 12_000,
    pretrain: int = 2_000,
    chunksize: int = 100,
    random_state: int = 0,
    png: str | Path | None = "skocl-demo.png",
    print_every: int = 10,
) -> dict:
    """Run the demo; return ``{model name: PrequentialResult}``."""
    X, y, drifts = make_drift_stream(
        n_samples, N_FEATURES, 4, drift_points=(0.4, 0.7), random_state=random_state
    )
    classes = np.unique(y)
    models = {
        "skocl": OnlineFineTuneClassifier(random_state=random_state),
        "MLPClassifier": MLPClassifier(random_state=random_state),
        "SGDClassifier": SGDClassifier(loss="log_loss", random_state=random_state),
    }
    print(
        f"Stream: {n_samples} rows, {N_FEATURES} features, 4 classes, abrupt drifts at rows "
        f"{drifts.tolist()}; pretraining on the first {pretrain}, then test-then-train "
        f"in chunks of {chunksize}."
    )
    results, seconds = {}, {}
    for name, model in models.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X[:pretrain], y[:pretrain])

        def report(rec, name=name):
            if name == "skocl" and (rec["chunk"] + 1) % print_every == 0:
                print(
                    f"  rows {pretrain + rec['rows_seen']:>6}: chunk accuracy "
                    f"{rec['accuracy']:.3f}, running {rec['running_accuracy']:.3f}"
                )

        if name == "skocl":
            print("skocl, prequential accuracy as it learns:")
        chunks = iter_chunks(X[pretrain:], y[pretrain:], chunksize=chunksize)
        results[name] = prequential(model, chunks, classes=classes, verbose=0, on_chunk=report)
        seconds[name] = time.perf_counter() - t0

    tail = (n_samples - pretrain) // chunksize // 5  # the last fifth of the chunks
    print()
    print(f"{'model':<15} {'prequential acc':>16} {'acc, last 20%':>14} {'seconds':>8}")
    summary = {}
    for name, res in results.items():
        last = np.mean([r["accuracy"] for r in res.records[-tail:]])
        summary[name] = (res.running(), last)
        print(f"{name:<15} {res.running():>16.3f} {last:>14.3f} {seconds[name]:>8.2f}")

    detected = getattr(results["skocl"].estimator, "drifts_", [])
    if results["skocl"].estimator.drift_detector_ is None:
        print("\n(no drift detector: install river, pip install 'skocl[drift]', for detection)")
    else:
        # drifts_ counts rows learned, pretraining included.
        print(f"\nskocl detected drifts at rows {detected} (true drifts at {drifts.tolist()})")
    if png is not None:
        _plot(results, drifts - pretrain, png)
        print(f"\nLearning curves saved to {png}")
    return results


def _plot(results, drifts, png) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: pip install 'skocl[plot]' for the PNG)")
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, res in results.items():
        rows = np.array([r["rows_seen"] for r in res.records])
        acc = np.array([r["accuracy"] for r in res.records])
        window = 10
        smooth = np.convolve(acc, np.ones(window) / window, mode="valid")
        ax.plot(rows[window - 1 :], smooth, label=name)
    for i, d in enumerate(drifts):
        ax.axvline(d, color="grey", ls="--", lw=1, label="drift" if i == 0 else None)
    ax.set_xlabel("rows streamed after pretraining")
    ax.set_ylabel("accuracy (test-then-train, 10-chunk mean)")
    ax.set_title("skocl demo: prequential accuracy on a drifting stream")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
