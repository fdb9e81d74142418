"""Learning from streams: chunked readers, prequential (test-then-train) evaluation,
checkpoints.

The readers live in ``_readers.py``; this module adds :func:`prequential`, which runs
a model over a stream of chunks, scoring each chunk before learning from it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sklearn.metrics import check_scoring, get_scorer

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
    "PrequentialResult",
    "StreamChunk",
    "StreamError",
    "iter_chunks",
    "open_stream",
    "prequential",
    "read_csv",
    "read_parquet",
]


@dataclass
class PrequentialResult:
    """Per-chunk scores of a prequential run.

    Attributes
    ----------
    metrics : list of str
        Names of the metrics.
    records : list of dict
        One dict per chunk: ``chunk``, ``rows`` (in the chunk), ``rows_seen`` (learned
        from, after this chunk), ``seconds`` (learning and scoring), then for each metric
        its value on the chunk (NaN for a chunk scored before anything was learned) and
        its running value ``running_<metric>``: the mean of the chunk values weighted by
        their rows, which for accuracy equals the accuracy over all scored rows.
    estimator : estimator or None
        The model after the run (the restored one when resuming).
    """

    metrics: list[str]
    records: list[dict] = field(default_factory=list)
    estimator: Any = None

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


def prequential(
    estimator,
    chunks: Iterable[StreamChunk | tuple],
    *,
    metrics=("accuracy",),
    classes=None,
    learn: bool = True,
    verbose: int = 1,
    checkpoint: str | os.PathLike | None = None,
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
    checkpoint : path, default=None
        Save the model and the stream position there every ``checkpoint_every`` chunks
        and at the end (see :func:`skocl.save`).
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
    result = PrequentialResult(list(scorers))
    skip = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        from ._persist import load, read_meta

        position = read_meta(checkpoint)["extra"]
        estimator = load(checkpoint, module=_user_module(estimator))
        result.records = position["records"]
        skip = position["chunks_done"]

    totals = {name: 0.0 for name in scorers}
    scored_rows = dict.fromkeys(scorers, 0)
    for rec in result.records:
        for name in scorers:
            if not math.isnan(rec[name]):
                totals[name] += rec[name] * rec["rows"]
                scored_rows[name] += rec["rows"]
    rows_seen = result.records[-1]["rows_seen"] if result.records else 0

    bar = _progress(verbose)
    try:
        for i, chunk in enumerate(chunks):
            X, y = (chunk.X, chunk.y) if isinstance(chunk, StreamChunk) else chunk
            if i < skip:
                continue
            t0 = time.perf_counter()
            rec: dict[str, Any] = {"chunk": i, "rows": len(y)}
            fitted = _is_fitted(estimator)
            for name, scorer in scorers.items():
                value = float(scorer(estimator, X, y)) if fitted else math.nan
                rec[name] = value
                if not math.isnan(value):
                    totals[name] += value * len(y)
                    scored_rows[name] += len(y)
                rec[f"running_{name}"] = (
                    totals[name] / scored_rows[name] if scored_rows[name] else math.nan
                )
            if learn:
                if fitted or classes is None:
                    estimator.partial_fit(X, y)
                else:
                    estimator.partial_fit(X, y, classes=classes)
                rows_seen += len(y)
            rec["rows_seen"] = rows_seen
            rec["seconds"] = time.perf_counter() - t0
            result.records.append(rec)
            if on_chunk is not None:
                on_chunk(rec)
            if bar is not None:
                bar.update(len(y))
                if scorers:
                    first = result.metrics[0]
                    bar.set_postfix({first: f"{rec[f'running_{first}']:.4f}"}, refresh=False)
            if checkpoint is not None and (i + 1) % checkpoint_every == 0:
                _save_checkpoint(estimator, checkpoint, i + 1, result, checkpoint_extra)
    finally:
        if bar is not None:
            bar.close()
    if checkpoint is not None and result.records:
        done = result.records[-1]["chunk"] + 1
        _save_checkpoint(estimator, checkpoint, done, result, checkpoint_extra)
    result.estimator = estimator
    return result


def _save_checkpoint(estimator, path, chunks_done: int, result, extra) -> None:
    from ._persist import save

    position = {"chunks_done": chunks_done, "records": result.records}
    save(estimator, path, extra={**(extra or {}), **position})


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


def _progress(verbose: int):
    if not verbose or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(unit=" rows", unit_scale=True, dynamic_ncols=True, file=sys.stderr)
