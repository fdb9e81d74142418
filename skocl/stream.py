"""Learning from streams: chunked readers, prequential (test-then-train) evaluation,
checkpoints.

The readers live in ``_readers``; this module adds :func:`iter_prequential`, which runs
a model over a stream of chunks, scoring each chunk before learning from it, the
collector of its records (:class:`PrequentialResult`), and :func:`prequential`, which
runs both with a progress bar and checkpoints (:class:`Checkpoint`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import check_scoring, get_scorer

from ._checkpoint import Checkpoint, CheckpointMismatch
from ._progress import progress_bar
from ._readers import (
    BadRowReport,
    StreamChunk,
    StreamError,
    iter_chunks,
    open_stream,
    read_csv,
    read_parquet,
)

__all__ = [
    "BadRowReport",
    "Checkpoint",
    "CheckpointMismatch",
    "PrequentialResult",
    "StreamChunk",
    "StreamError",
    "iter_chunks",
    "iter_prequential",
    "open_stream",
    "prequential",
    "read_csv",
    "read_parquet",
]


@dataclass
class PrequentialResult:
    """Per-chunk scores of a prequential run, and the collector that builds them.

    :func:`iter_prequential` yields one record per chunk; :meth:`add` turns it into
    the record kept here, with the running values. :func:`prequential` does both.

    Attributes
    ----------
    metrics : list of str
        Names of the metrics.
    records : list of dict
        One dict per chunk: ``chunk``, ``rows`` (in the chunk), then for each metric
        its value on the chunk (NaN for a chunk scored before anything was learned) and
        its running value ``running_<metric>``: the mean of the chunk values weighted by
        their rows, which for accuracy equals the accuracy over all scored rows; then
        ``rows_seen`` (learned from, after this chunk) and ``seconds`` (learning and
        scoring).
    estimator : estimator or None
        The model after the run (the restored one when resuming).

    Examples
    --------
    >>> from skocl.stream import PrequentialResult
    >>> result = PrequentialResult(["accuracy"])
    >>> for value, rows in ((float("nan"), 10), (0.5, 10), (1.0, 30)):
    ...     _ = result.add({"chunk": len(result.records), "rows": rows,
    ...                     "accuracy": value, "learned": rows, "seconds": 0.0})
    >>> result.running("accuracy"), result.records[-1]["rows_seen"]
    (0.875, 50)
    """

    metrics: list[str]
    records: list[dict] = field(default_factory=list)
    estimator: Any = None
    _totals: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _scored: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Records restored from a checkpoint carry on the running values.
        self._totals = dict.fromkeys(self.metrics, 0.0)
        self._scored = dict.fromkeys(self.metrics, 0)
        for rec in self.records:
            self._count(rec)

    def _count(self, rec: dict) -> None:
        for name in self.metrics:
            if not math.isnan(rec[name]):
                self._totals[name] += rec[name] * rec["rows"]
                self._scored[name] += rec["rows"]

    def add(self, record: dict) -> dict:
        """Keep a record of :func:`iter_prequential`, with running values and rows seen.

        Parameters
        ----------
        record : dict
            ``chunk``, ``rows``, the value of each metric, ``learned`` (rows learned
            from the chunk) and ``seconds``.

        Returns
        -------
        record : dict
            The record as kept in :attr:`records`.
        """
        self._count(record)
        rec: dict[str, Any] = {"chunk": record["chunk"], "rows": record["rows"]}
        for name in self.metrics:
            rec[name] = record[name]
            scored = self._scored[name]
            rec[f"running_{name}"] = self._totals[name] / scored if scored else math.nan
        previous = self.records[-1]["rows_seen"] if self.records else 0
        rec["rows_seen"] = previous + record["learned"]
        rec["seconds"] = record["seconds"]
        self.records.append(rec)
        return rec

    def running(self, metric: str | None = None) -> float:
        """The latest running value of ``metric`` (the first metric by default)."""
        metric = metric or self.metrics[0]
        return self.records[-1][f"running_{metric}"] if self.records else math.nan

    def to_frame(self):
        """The records as a pandas DataFrame, one row per chunk."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records)

    def plot(self, metric: str | None = None, ax=None, drifts: Sequence[int] | None = None):
        """Plot the per-chunk and running values of ``metric`` against rows seen.

        Parameters
        ----------
        metric : str, default=None
            Which metric; the first by default.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure by default.
        drifts : sequence of int, default=None
            Rows-seen positions to mark with vertical lines (detected drifts).

        Returns
        -------
        ax : matplotlib Axes
        """
        import matplotlib.pyplot as plt

        metric = metric or self.metrics[0]
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        rows = [r["rows_seen"] for r in self.records]
        ax.plot(rows, [r[metric] for r in self.records], alpha=0.4, label=f"{metric} per chunk")
        ax.plot(rows, [r[f"running_{metric}"] for r in self.records], label=f"running {metric}")
        for i, pos in enumerate(drifts or []):
            ax.axvline(pos, color="tab:red", ls="--", lw=1, label="drift" if i == 0 else None)
        ax.set_xlabel("rows seen")
        ax.set_ylabel(metric)
        ax.set_title("Prequential evaluation (test, then train)")
        ax.legend(loc="lower right")
        return ax


def _scorers(metrics) -> dict[str, Callable]:
    if isinstance(metrics, dict):
        return dict(metrics)
    if metrics is None or isinstance(metrics, (str, Callable)):
        metrics = [metrics or "accuracy"]
    out: dict[str, Callable] = {}
    for m in metrics:
        if isinstance(m, str):
            out[m] = get_scorer(m)
        elif isinstance(m, tuple):
            out[m[0]] = check_scoring(None, scoring=m[1]) if isinstance(m[1], str) else m[1]
        else:
            out[getattr(m, "__name__", repr(m))] = m
    return out


def iter_prequential(
    estimator,
    chunks: Iterable[StreamChunk | tuple],
    *,
    metrics=("accuracy",),
    classes=None,
    learn: bool = True,
    start: int = 0,
) -> Iterator[dict]:
    """Test-then-train, one chunk at a time: score each chunk, learn it, yield its record.

    The loop of :func:`prequential`, without running values, progress bar or
    checkpoints; collect its records with :meth:`PrequentialResult.add`.

    Parameters
    ----------
    estimator : estimator with partial_fit
        Updated in place.
    chunks : iterable of StreamChunk or (X, y) tuples
        The stream, e.g. from :func:`open_stream`. When it names its columns (the
        ``features`` attribute of the readers' streams), an unfitted model gets its
        first chunk as a pandas DataFrame with those names and keeps them as
        ``feature_names_in_``; a fitted model with other names (or the same in another
        order) refuses the stream; a model that learned its first rows without names
        goes on without them.
    metrics : str, callable, sequence or dict, default=("accuracy",)
        As in :func:`prequential`; a dict maps names to scorers. ``()`` scores nothing.
    classes : array-like, default=None
        Passed to the first ``partial_fit`` of an unfitted estimator.
    learn : bool, default=True
        False scores every chunk without learning.
    start : int, default=0
        Chunks at the head of the stream to read past without scoring or learning
        (those a resumed model has already learned).

    Yields
    ------
    record : dict
        ``chunk`` (its index in the stream), ``rows``, the value of each metric on the
        chunk before it is learned (NaN while the estimator is unfitted), ``learned``
        (rows learned from the chunk) and ``seconds`` (scoring and learning).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import SGDClassifier
    >>> from skocl.stream import iter_chunks, iter_prequential
    >>> X, y = load_iris(return_X_y=True)
    >>> records = iter_prequential(SGDClassifier(random_state=0),
    ...                            iter_chunks(X, y, chunksize=50), classes=[0, 1, 2])
    >>> [(r["chunk"], r["rows"], r["learned"]) for r in records]
    [(0, 50, 50), (1, 50, 50), (2, 50, 50)]
    """
    scorers = _scorers(metrics) if metrics != () else {}
    for i, chunk in enumerate(chunks):
        X, y = (chunk.X, chunk.y) if isinstance(chunk, StreamChunk) else chunk
        if i < start:
            continue
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"chunk": i, "rows": len(y)}
        fitted = _is_fitted(estimator)
        X, in_order = _model_input(estimator, chunks, X, fitted)
        with _columns_in_order(in_order):
            for name, scorer in scorers.items():
                rec[name] = float(scorer(estimator, X, y)) if fitted else math.nan
            if learn:
                if fitted or classes is None:
                    estimator.partial_fit(X, y)
                else:
                    estimator.partial_fit(X, y, classes=classes)
        rec["learned"] = len(y) if learn else 0
        rec["seconds"] = time.perf_counter() - t0
        yield rec


def prequential(
    estimator,
    chunks: Iterable[StreamChunk | tuple],
    *,
    metrics=("accuracy",),
    classes=None,
    learn: bool = True,
    verbose: int = 1,
    checkpoint: str | os.PathLike | Checkpoint | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    checkpoint_extra: dict | None = None,
    on_chunk: Callable[[dict], Any] | None = None,
) -> PrequentialResult:
    """Test-then-train over a stream: each chunk is scored, then learned.

    Parameters
    ----------
    estimator : estimator with partial_fit
        An :class:`~skocl.OnlineFineTuneClassifier`, a :class:`~skocl.StreamPipeline`,
        or any sklearn estimator with ``partial_fit``. It is updated in place.
    chunks : iterable of StreamChunk or (X, y) tuples
        The stream, e.g. from :func:`open_stream`.
    metrics : str, callable or sequence, default=("accuracy",)
        Scorer names (``"accuracy"``, ``"balanced_accuracy"``, ``"neg_log_loss"``, ...),
        scorer callables ``scorer(estimator, X, y)``, or ``(name, scorer)`` pairs.
        ``()`` trains without scoring.
    classes : array-like, default=None
        Passed to the first ``partial_fit`` of an unfitted estimator.
    learn : bool, default=True
        False scores every chunk without learning (plain evaluation).
    verbose : int, default=1
        Show a tqdm progress bar (rows per second, running value of the first metric)
        when attached to a terminal and tqdm is installed; 0 is silent.
    checkpoint : path or Checkpoint, default=None
        Save the model and the stream position there every ``checkpoint_every`` chunks
        and at the end (see :func:`skocl.save`). A ``Checkpoint`` object brings its own
        interval and data, and ignores ``checkpoint_every`` and ``checkpoint_extra``.
    checkpoint_every : int, default=10
        Chunks between checkpoints.
    resume : bool, default=False
        Continue from ``checkpoint`` if it exists: the model, its optimizer and random
        states and the scores so far are restored, and the chunks it had already
        learned are read past without learning. The result equals an uninterrupted run.
    checkpoint_extra : dict, default=None
        Further JSON-able data saved with each checkpoint (read at save time, so it
        may be filled in while the stream runs).
    on_chunk : callable, default=None
        Called with each new record (for logging).

    Returns
    -------
    result : PrequentialResult
        Scores per chunk; ``result.estimator`` is the model (the restored one when
        resuming).

    See Also
    --------
    iter_prequential : The same loop, one record at a time.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skocl import OnlineFineTuneClassifier
    >>> from skocl.stream import iter_chunks, prequential
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = OnlineFineTuneClassifier(random_state=0)
    >>> result = prequential(clf, iter_chunks(X / 16, y, chunksize=200),
    ...                      classes=range(10), verbose=0)
    >>> len(result.records)
    9
    >>> bool(result.running("accuracy") > 0.5)
    True
    """
    scorers = _scorers(metrics) if metrics != () else {}
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint(checkpoint, every=checkpoint_every, extra=checkpoint_extra)
    result = PrequentialResult(list(scorers))
    start = 0
    if resume and checkpoint is not None and checkpoint.exists():
        estimator, position = checkpoint.resume(module=_user_module(estimator))
        result = PrequentialResult(list(scorers), position["records"])
        start = position["chunks_done"]

    first = result.metrics[0] if scorers else None
    records = iter_prequential(
        estimator, chunks, metrics=scorers, classes=classes, learn=learn, start=start
    )
    with progress_bar(verbose) as bar:
        for record in records:
            rec = result.add(record)
            if on_chunk is not None:
                on_chunk(rec)
            bar.update(rec["rows"], first and {first: f"{rec[f'running_{first}']:.4f}"})
            done = rec["chunk"] + 1
            if checkpoint is not None and checkpoint.due(done):
                checkpoint.write(estimator, {"chunks_done": done, "records": result.records})
    if checkpoint is not None and result.records:
        done = result.records[-1]["chunk"] + 1
        checkpoint.write(estimator, {"chunks_done": done, "records": result.records})
    result.estimator = estimator
    return result


def _model_input(estimator, chunks, X, fitted: bool):
    """``X`` as the model should get it, and whether its columns are known to be in the
    order of the model's ``feature_names_in_``.

    The reader knows the column names (``chunks.features``, once it has read a header).
    An unfitted model gets them on a DataFrame, and keeps them. A model that keeps
    names, and whose names are the reader's in the same order, gets the bare array: the
    reader has already put the columns in that order, and scikit-learn's per-call check
    of a DataFrame costs more than the check done here (a few milliseconds per call).
    A model whose names differ gets the DataFrame, which scikit-learn refuses with a
    message naming the difference. A model that learned without names gets the array,
    as before.
    """
    names = getattr(chunks, "features", None)
    if names is None or not isinstance(X, np.ndarray):
        return X, False
    if not fitted:
        return _with_feature_names(X, names), False
    kept = getattr(estimator, "feature_names_in_", None)
    if kept is None:
        return X, False
    if list(kept) == list(names):
        return X, True
    return _with_feature_names(X, names), False


@contextlib.contextmanager
def _columns_in_order(in_order: bool) -> Iterator[None]:
    """Silence scikit-learn's warning that an array has no feature names, for arrays
    whose columns :func:`_model_input` found in the model's order."""
    if not in_order:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="X does not have valid feature names", category=UserWarning
        )
        yield


def _with_feature_names(X, names: list[str] | None):
    """``X`` as a DataFrame with the reader's column names, so that the model records
    them (``feature_names_in_``) and later refuses data whose columns are in another
    order. The DataFrame wraps the array without copying it."""
    if (
        names is None
        or not isinstance(X, np.ndarray)
        or X.ndim != 2
        or X.shape[1] != len(names)
        or not all(isinstance(name, str) for name in names)
    ):
        return X
    try:
        import pandas as pd
    except ImportError:  # pandas is optional: the model then keeps no names
        return X
    return pd.DataFrame(X, columns=names, copy=False)


def _user_module(estimator):
    """The nn.Module instance a resumed model needs, when the user gave one."""
    from torch import nn

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    module = getattr(final, "module", None)
    return module if isinstance(module, nn.Module) else None


def _is_fitted(estimator) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True
