"""The public types of the readers, their options and the shape of their errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Rows kept in BadRowReport.rows; BadRowReport.count keeps counting past it.
MAX_REPORTED_ROWS = 1000

# skocl's networks compute in float32 by default, where a larger magnitude becomes inf:
# the readers' default bound on feature values (max_abs).
FLOAT32_MAX = float(np.finfo(np.float32).max)

_POLICIES = ("raise", "skip")
_KIND_TEXT = {"float": "a number", "int": "an integer", "bool": "a boolean", "string": "text"}


class StreamChunk(NamedTuple):
    """One chunk of a stream: features, labels and where they came from.

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features) or pandas.DataFrame
        float64 features, in the order of ``features``; a DataFrame when the reader
        was called with ``as_frame=True`` (text columns then stay text).
    y : ndarray of shape (n_rows,) or (n_rows, n_targets), or None
        Labels, with the type inferred for the whole stream (int64, float64, bool or
        object holding str); of several targets (``target`` a list), a column per
        target, float64 with NaN for a missing label when every target is float, else
        object with each label of its column's type and None for a missing one. None
        when the stream has no target.
    source : str
        The file the rows come from, or ``"<DataFrame>"``, ``"<polars.DataFrame>"``,
        ``"<ndarray>"`` for in-memory data.
    first_line : int or None
        Physical line in ``source`` of the chunk's first row, 1-based, the header being
        line 1 (for Parquet: the 1-based row number). None for in-memory data.
    index : int
        Position of the chunk in the whole stream, from 0.
    rows : ndarray of shape (n_rows,) of int64 or None
        Physical line of every row, as ``first_line`` (rows dropped as bad or blank
        leave gaps). None for in-memory data.
    """

    X: np.ndarray | pd.DataFrame
    y: np.ndarray | None
    source: str
    first_line: int | None
    index: int
    rows: np.ndarray | None = None


class StreamError(ValueError):
    """Bad input in a stream; the message names the file, the line and the column.

    Parameters
    ----------
    message : str
        The full message.
    source : str
        The file (or in-memory source) at fault.
    line : int or None, default=None
        1-based physical line of the file (the header is line 1); for Parquet files
        the 1-based row number. None when it does not apply.
    column : str or None, default=None
        The column at fault, when there is one.

    Examples
    --------
    >>> err = StreamError("a.csv, line 3, column 'x': missing value",
    ...                   source="a.csv", line=3, column="x")
    >>> isinstance(err, ValueError), err.line, err.column
    (True, 3, 'x')
    """

    def __init__(
        self, message: str, *, source: str, line: int | None = None, column: str | None = None
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.column = column

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are not replayed by the default exception pickling.
        return (_rebuild_stream_error, (str(self), self.source, self.line, self.column))


def _rebuild_stream_error(
    message: str, source: str, line: int | None, column: str | None
) -> StreamError:
    return StreamError(message, source=source, line=line, column=column)


@dataclass
class BadRowReport:
    """What ``on_bad_rows="skip"`` dropped.

    Readers add to the report they are given (or to a new one, available as the
    ``report`` attribute of the iterator they return) while they iterate.

    Attributes
    ----------
    count : int
        Number of rows dropped so far.
    rows : list of tuple (source, line, column, reason)
        The first ``MAX_REPORTED_ROWS`` (1000) dropped rows; ``column`` is None for a
        row with a wrong number of fields.

    Examples
    --------
    >>> report = BadRowReport()
    >>> report.add("a.csv", 4, "y", "missing target value")
    >>> report.count, report.rows
    (1, [('a.csv', 4, 'y', 'missing target value')])
    """

    count: int = 0
    rows: list[tuple[str, int | None, str | None, str]] = field(default_factory=list)

    def add(self, source: str, line: int | None, column: str | None, reason: str) -> None:
        """Count one dropped row, and keep it if fewer than 1000 are kept."""
        self.count += 1
        if len(self.rows) < MAX_REPORTED_ROWS:
            self.rows.append((source, line, column, reason))


class _ChunkStream(Iterator[StreamChunk]):
    """The iterator the readers return: chunks, the report of dropped rows, the columns.

    Attributes
    ----------
    report : BadRowReport
        Rows dropped so far.
    features : list of str or None
        Names of the feature columns, in the order of ``X``; known once the first
        header is read (None before, and for arrays).
    target : str, list of str or None
        Name of the label column, or the names of several.
    """

    def __init__(self, report: BadRowReport, target: str | list[str] | None = None) -> None:
        self._chunks: Iterator[StreamChunk] = iter(())
        self.report = report
        self.features: list[str] | None = None
        self.target = target

    def __iter__(self) -> _ChunkStream:
        return self

    def __next__(self) -> StreamChunk:
        return next(self._chunks)

    def close(self) -> None:
        """Stop reading and close the open file, if any."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> _ChunkStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fail(
    source: str, line: int | None, column: str | None, reason: str, unit: str = "line"
) -> StreamError:
    """The StreamError for ``reason`` at a place: ``source, line 3, column 'x': reason``."""
    where = [source]
    if line is not None:
        where.append(f"{unit} {line}")
    if column is not None:
        where.append(f"column {column!r}")
    return StreamError(f"{', '.join(where)}: {reason}", source=source, line=line, column=column)


def _arrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv
    except ImportError as exc:  # pragma: no cover - pyarrow is in the test environment
        raise ImportError("reading files needs pyarrow: pip install 'skocl[stream]'") from exc
    return pa, pc, pcsv


def _show(value: object) -> str:
    """A short repr of a raw field for messages."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_chunksize(chunksize: int) -> None:
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)):
        raise TypeError(f"chunksize must be an int, got {chunksize!r}")
    if chunksize < 1:
        raise ValueError(f"chunksize must be at least 1, got {chunksize}")


def _targets_of(target: Any) -> list:
    """The label columns ``target`` names: none (None), one (a name) or several (a list).

    A list of one name is refused rather than read as one target of shape (n_rows, 1),
    which the estimator would take as a single task anyway.
    """
    if target is None:
        return []
    if not isinstance(target, list):
        return [target]
    if not target:
        raise ValueError("target=[] names no column: pass None for a stream without labels")
    if len(target) == 1:
        raise ValueError(
            f"target={target!r} names one column: pass it as a string, "
            f"target={target[0]!r} (a list names several targets, one column of y each)"
        )
    twice = sorted({str(name) for name in target if target.count(name) > 1})
    if twice:
        raise ValueError(f"target names {', '.join(map(repr, twice))} twice")
    return list(target)


@dataclass
class _Options:
    """The settings of a file reader, checked when the reader is called."""

    target: str | list[str] | None
    features: list[str] | None
    chunksize: int
    on_bad_rows: str
    allow_nan: bool
    as_frame: bool
    report: BadRowReport
    max_abs: float = FLOAT32_MAX

    @property
    def targets(self) -> list[str]:
        """The label columns: none, one, or several when ``target`` is a list."""
        return _targets_of(self.target)

    @classmethod
    def checked(
        cls,
        target: str | list[str] | None,
        chunksize: int,
        features: Any,
        on_bad_rows: str,
        allow_nan: bool,
        as_frame: bool,
        report: BadRowReport | None,
        max_abs: float = FLOAT32_MAX,
    ) -> _Options:
        """The options of a call, or the error that names the bad argument."""
        _check_chunksize(chunksize)
        if on_bad_rows not in _POLICIES:
            raise ValueError(f"on_bad_rows must be 'raise' or 'skip', got {on_bad_rows!r}")
        if (
            isinstance(max_abs, bool)
            or not isinstance(max_abs, (int, float, np.integer, np.floating))
            or not max_abs > 0
        ):
            raise ValueError(f"max_abs must be a positive number, got {max_abs!r}")
        targets = _targets_of(target)
        if features is not None:
            features = list(features)
            if len(set(features)) != len(features):
                raise ValueError(f"features names a column twice: {features}")
            for name in targets:
                if name in features:
                    raise ValueError(f"the target {name!r} cannot also be a feature")
        return cls(
            target,
            features,
            int(chunksize),
            on_bad_rows,
            bool(allow_nan),
            bool(as_frame),
            BadRowReport() if report is None else report,
            float(max_abs),
        )
