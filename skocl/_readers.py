"""Chunked readers of labelled data for ``partial_fit``.

Every reader here is an iterator of :class:`StreamChunk`: a block of at most
``chunksize`` rows with float64 features ``X`` and labels ``y``, ready to hand to
``OnlineFineTuneClassifier.partial_fit``. Memory is bounded by the chunk (plus, for
CSV, pyarrow's parser, which holds a fixed ~10 MiB; for Parquet, one row group), never
by the file.

How a CSV file is read
----------------------
pyarrow's streaming reader (:func:`pyarrow.csv.open_csv`) does the parsing; nothing
here is a hand-written parser. ``benchmarks/bench_readers.py`` measures it against
pandas' chunked reader. Two paths share everything but the conversion of text to
values:

* the *typed* path asks pyarrow to convert each column to its fixed type. It is the
  fast one, and the one taken as long as the file is clean;
* the *checked* path reads every field as raw bytes and converts column by column with
  :mod:`pyarrow.compute`, so that a value that does not convert is pinned to its row
  (by bisection with the same casts) instead of failing a whole block. pyarrow's own
  conversion errors name the column but not the row, and a failed block ends the
  streaming reader, so when the typed path fails, the file is reopened on the checked
  path, the rows already delivered are skipped, and reading goes on from there.

Line numbers
------------
Lines are 1-based physical lines of the file, the header being line 1 (or lines 1..k
when a quoted header name holds a newline). pyarrow reports no line numbers, so they
are counted here: blank lines are kept as rows by the parser (and dropped afterwards),
each row counts one line plus the newlines inside its quoted values (counted with
:func:`pyarrow.compute.count_substring` over the text columns), and rows pyarrow
rejects for a wrong number of fields are placed by a second, lazy pass with the
standard :mod:`csv` module that only starts when such a row exists and only reads as far
as needed. Every chunk from a file carries the line of each of its rows in
``StreamChunk.rows``. For Parquet files, "line" means the 1-based row number in the
file.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "BadRowReport",
    "StreamChunk",
    "StreamError",
    "iter_chunks",
    "open_stream",
    "read_csv",
    "read_parquet",
]

# Bytes pyarrow parses at a time. pyarrow's streaming reader holds some 40 blocks in
# flight, so this sets the reader's memory (about 10 MiB here) next to the chunk's.
# benchmarks/bench_readers.py finds reading as fast from 128 KiB to 1 MiB. A row longer
# than a block makes pyarrow fail; the block then grows for that file (_MAX_BLOCK_SIZE).
_BLOCK_SIZE = 1 << 18
_MAX_BLOCK_SIZE = 1 << 30

# Rows kept in BadRowReport.rows; BadRowReport.count keeps counting past it.
MAX_REPORTED_ROWS = 1000

# Tests set this to send every file down the checked path, to compare it with the
# typed one.
_ALWAYS_CHECK = False

_POLICIES = ("raise", "skip")
_KIND_TEXT = {"float": "a number", "int": "an integer", "bool": "a boolean", "string": "text"}
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".gz", ".txt", ".txt.gz")


class StreamChunk(NamedTuple):
    """One chunk of a stream: features, labels and where they came from.

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features) or pandas.DataFrame
        float64 features, in the order of ``features``; a DataFrame when the reader
        was called with ``as_frame=True`` (text columns then stay text).
    y : ndarray of shape (n_rows,) or None
        Labels, with the type inferred for the whole stream (int64, float64, bool or
        object holding str); None when the stream has no target.
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
    target : str or None
        Name of the label column.
    """

    def __init__(self, report: BadRowReport, target: str | None = None) -> None:
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


# --------------------------------------------------------------------------- helpers


def _fail(
    source: str, line: int | None, column: str | None, reason: str, unit: str = "line"
) -> StreamError:
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


def _check_params(
    chunksize: int,
    on_bad_rows: str | None = None,
    target: str | None = None,
    features: list[str] | None = None,
) -> None:
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)):
        raise TypeError(f"chunksize must be an int, got {chunksize!r}")
    if chunksize < 1:
        raise ValueError(f"chunksize must be at least 1, got {chunksize}")
    if on_bad_rows is not None and on_bad_rows not in _POLICIES:
        raise ValueError(f"on_bad_rows must be 'raise' or 'skip', got {on_bad_rows!r}")
    if features is not None:
        if len(set(features)) != len(features):
            raise ValueError(f"features names a column twice: {features}")
        if target is not None and target in features:
            raise ValueError(f"the target {target!r} cannot also be a feature")


def _resolve_paths(paths: Any) -> list[str]:
    """One path, a list of paths or glob patterns -> existing files, patterns sorted."""
    if isinstance(paths, (str, os.PathLike)):
        items = [paths]
    else:
        items = list(paths)
        if not items:
            raise StreamError("no file given: the list of paths is empty", source="<paths>")
    files = []
    for item in items:
        name = os.fspath(item)
        if os.path.isfile(name):
            files.append(name)
        elif glob.has_magic(name):
            matches = sorted(m for m in glob.glob(name) if os.path.isfile(m))
            if not matches:
                raise _fail(name, None, None, "the pattern matches no file")
            files.extend(matches)
        else:
            raise _fail(name, None, None, "no such file")
    return files


@dataclass
class _Options:
    target: str | None
    features: list[str] | None
    chunksize: int
    on_bad_rows: str
    allow_nan: bool
    as_frame: bool
    report: BadRowReport


@dataclass
class _Layout:
    """The columns of a stream, fixed by its first file."""

    source: str
    names: list[str]
    target: str | None
    features: list[str]
    # used column -> "float", "int", "bool" or "string"
    kinds: dict[str, str] = field(default_factory=dict)
    # Feature columns that the first chunk says are text, read with as_frame=False:
    # their first unreadable value stops the stream whatever on_bad_rows says, since
    # skipping would drop nearly every row.
    not_numeric: set[str] = field(default_factory=set)

    @property
    def used(self) -> list[str]:
        """Features and target, in the order of the file."""
        wanted = set(self.features)
        if self.target is not None:
            wanted.add(self.target)
        return [name for name in self.names if name in wanted]


def _select_columns(
    source: str, names: list[str], opts: _Options, line: int | None, unit: str
) -> _Layout:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _fail(source, line, name, "the header names this column twice", unit)
        seen.add(name)
    if opts.target is not None and opts.target not in seen:
        raise _fail(source, line, opts.target, "no such column (the target)", unit)
    if opts.features is None:
        features = [name for name in names if name != opts.target]
    else:
        features = list(opts.features)
        for name in features:
            if name not in seen:
                raise _fail(source, line, name, "no such column (a selected feature)", unit)
    return _Layout(source=source, names=list(names), target=opts.target, features=features)


def _check_same_columns(source: str, names: list[str], layout: _Layout, unit: str) -> None:
    """A later file must have exactly the columns of the first, in the same places."""
    line = 1 if unit == "line" else None
    first = os.path.basename(layout.source)
    where = {name: i for i, name in enumerate(names)}
    if len(where) != len(names):
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise _fail(source, line, name, "the header names this column twice", unit)
    for old, name in enumerate(layout.names):
        new = where.get(name)
        if new is None:
            raise _fail(
                source,
                line,
                name,
                f"column missing (it is field {old + 1} in {first})",
                unit,
            )
        if new != old:
            raise _fail(
                source,
                line,
                name,
                f"column moved from field {old + 1} (in {first}) to field {new + 1}",
                unit,
            )
    if len(names) > len(layout.names):
        extra = len(layout.names)
        reason = f"unexpected column at field {extra + 1} (not in {first})"
        raise _fail(source, line, names[extra], reason, unit)


# ------------------------------------------------------------- value conversion


def _cast_locating(arr: pa.Array, to: pa.DataType) -> tuple[pa.Array, np.ndarray | None]:
    """Cast ``arr``; values that do not cast become null and are flagged.

    The failing values are found by bisection with the same cast, so what counts as
    readable is exactly what pyarrow's cast accepts.
    """
    pa, pc, _ = _arrow()
    try:
        return pc.cast(arr, to), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    bad = np.zeros(len(arr), dtype=bool)
    pending = [(0, len(arr))]
    while pending:
        lo, hi = pending.pop()
        if hi - lo <= 16:
            for i in range(lo, hi):
                try:
                    pc.cast(arr.slice(i, 1), to)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    bad[i] = True
            continue
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            try:
                pc.cast(arr.slice(a, b - a), to)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pending.append((a, b))
    cleaned = pc.if_else(pa.array(bad), pa.scalar(None, type=arr.type), arr)
    return pc.cast(cleaned, to), bad


def _casts(arr: pa.Array, to: pa.DataType) -> bool:
    """Whether every value of ``arr`` casts to ``to``."""
    pa, pc, _ = _arrow()
    try:
        pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _parse_text(raw: pa.Array, kind: str) -> tuple[pa.Array, np.ndarray | None]:
    """Convert a column read as bytes to ``kind``, as pyarrow's typed CSV reader does.

    Numbers are trimmed of spaces first and booleans are not: that is what the typed
    reader does, and the two paths must agree.
    """
    pa, pc, pcsv = _arrow()
    text, bad = _cast_locating(raw, pa.string())
    if kind == "string":
        return text, bad
    if kind == "bool":
        options = pcsv.ConvertOptions()
        true = pc.is_in(text, value_set=pa.array(options.true_values))
        false = pc.is_in(text, value_set=pa.array(options.false_values))
        values = pc.if_else(true, True, pc.if_else(false, False, pa.scalar(None, pa.bool_())))
        unknown = pc.and_(text.is_valid(), pc.invert(pc.or_(true, false)))
        if unknown.true_count:
            bad = _or(bad, unknown.to_numpy(zero_copy_only=False))
        return values, bad
    to = pa.float64() if kind == "float" else pa.int64()
    values, bad_value = _cast_locating(pc.utf8_trim_whitespace(text), to)
    return values, _or(bad, bad_value)


def _missing(arr: pa.Array, kind: str) -> np.ndarray | None:
    """Rows where ``arr`` has no value (null, or NaN for floats); None if there are none."""
    if kind == "float":
        values = arr.to_numpy(zero_copy_only=False)
        mask = np.isnan(values)
        return mask if mask.any() else None
    if arr.null_count:
        return arr.is_null().to_numpy(zero_copy_only=False)
    return None


# A bad row found in a block: (line, column or None, reason, stops the stream whatever
# on_bad_rows says).
_Item = tuple[int | None, str | None, str, bool]


def _screen(
    arrays: dict[str, pa.Array],
    failures: dict[str, np.ndarray],
    raw: dict[str, pa.Array] | None,
    layout: _Layout,
    opts: _Options,
    lines: np.ndarray,
    blank: np.ndarray | None,
) -> tuple[np.ndarray, list[_Item]]:
    """Sort the rows of a block into good ones and bad ones.

    A row is charged to its first faulty column in file order: a value that does not
    convert, a missing target, or a missing feature when NaN is not allowed.
    """
    n = len(lines)
    culprit = np.full(n, -1, dtype=np.intp)
    unreadable = np.zeros(n, dtype=bool)
    if blank is not None:
        culprit[blank] = -2
    used = layout.used
    for j, name in enumerate(used):
        fail = failures.get(name)
        if fail is not None:
            hit = fail & (culprit == -1)
            culprit[hit] = j
            unreadable |= hit
        if name == layout.target or not opts.allow_nan:
            miss = _missing(arrays[name], layout.kinds[name])
            if miss is not None:
                culprit[miss & (culprit == -1)] = j
    items: list[_Item] = []
    for i in np.flatnonzero(culprit >= 0):
        name = used[culprit[i]]
        if unreadable[i]:
            value = raw[name][i].as_py() if raw is not None else None
            fatal = name in layout.not_numeric
            reason = f"cannot read {_show(value)} as {_KIND_TEXT[layout.kinds[name]]}"
            if fatal:
                reason += (
                    " (the column holds text: read it with as_frame=True, or leave it out"
                    " of features)"
                )
            items.append((int(lines[i]), name, reason, fatal))
        elif name == layout.target:
            items.append((int(lines[i]), name, "missing target value", False))
        else:
            items.append(
                (int(lines[i]), name, "missing value (allow_nan=True lets NaN through)", False)
            )
    return culprit == -1, items


def _settle(
    source: str,
    batch: pa.RecordBatch | None,
    lines: np.ndarray,
    good: np.ndarray,
    items: list[_Item],
    opts: _Options,
    unit: str,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Yield the good rows of a block; raise on, or report, its bad rows.

    When the block holds a row that stops the stream, the good rows before it are
    yielded first, so that every full chunk before the bad row reaches the caller.
    """
    pa = _arrow()[0]
    stop = None
    if items:
        items.sort(key=lambda item: (item[0] is None, item[0] or 0))
        if opts.on_bad_rows == "raise":
            stop = 0
        else:
            stop = next((k for k, item in enumerate(items) if item[3]), None)
        for line, column, reason, _ in items[: len(items) if stop is None else stop]:
            opts.report.add(source, line, column, reason)
    if stop is not None:
        line, column, reason, _ = items[stop]
        if batch is not None and line is not None:
            keep = good & (lines < line)
            if keep.any():
                yield batch.filter(pa.array(keep)), lines[keep]
        raise _fail(source, line, column, reason, unit)
    if batch is None or not good.any():
        return
    if good.all():
        yield batch, lines
    else:
        yield batch.filter(pa.array(good)), lines[good]


# ------------------------------------------------------------------ chunk assembly


class _Assembler:
    """Cuts blocks of good rows into chunks of exactly ``chunksize`` rows."""

    def __init__(self, opts: _Options) -> None:
        self.opts = opts
        self.layout: _Layout | None = None
        self.index = 0
        self.offset = 0
        self.parts: list[tuple[pa.RecordBatch, np.ndarray]] = []
        self.n_rows = 0

    def push(self, batch: pa.RecordBatch, lines: np.ndarray, source: str) -> Iterator[StreamChunk]:
        if batch.num_rows == 0:
            return
        self.parts.append((batch, lines))
        self.n_rows += batch.num_rows
        while self.n_rows >= self.opts.chunksize:
            yield self._emit(self.opts.chunksize, source)

    def flush(self, source: str) -> Iterator[StreamChunk]:
        if self.n_rows:
            yield self._emit(self.n_rows, source)

    def _emit(self, n: int, source: str) -> StreamChunk:
        pa = _arrow()[0]
        batches, lines, need = [], [], n
        while need:
            batch, rows = self.parts[0]
            if batch.num_rows <= need:
                self.parts.pop(0)
                batches.append(batch)
                lines.append(rows)
                need -= batch.num_rows
            else:
                batches.append(batch.slice(0, need))
                lines.append(rows[:need])
                self.parts[0] = (batch.slice(need), rows[need:])
                need = 0
        self.n_rows -= n
        table = pa.Table.from_batches(batches)
        layout = self.layout
        assert layout is not None
        if self.opts.as_frame:
            X = table.select(layout.features).to_pandas()
            X.index = range(self.offset, self.offset + n)
        else:
            X = np.empty((n, len(layout.features)), dtype=np.float64)
            for j, name in enumerate(layout.features):
                X[:, j] = table.column(name).to_numpy()
        y = None if layout.target is None else table.column(layout.target).to_numpy()
        rows = np.concatenate(lines).astype(np.int64, copy=False)
        chunk = StreamChunk(X, y, source, int(rows[0]), self.index, rows)
        self.index += 1
        self.offset += n
        return chunk


# ---------------------------------------------------------------------- CSV reading


def _open_text(path: str) -> io.TextIOWrapper:
    pa = _arrow()[0]
    # utf-8-sig: pyarrow drops a byte order mark, so the header must match without it.
    return io.TextIOWrapper(
        pa.input_stream(path, compression="detect"),
        encoding="utf-8-sig",
        errors="replace",
        newline="",
    )


def _read_csv_header(path: str) -> tuple[list[str], int]:
    """The column names and the number of physical lines the header takes."""
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            try:
                names = next(reader)
            except StopIteration:
                raise _fail(path, None, None, "the file is empty (no header line)") from None
            return names, reader.line_num
    except csv.Error as exc:
        raise _fail(path, 1, None, f"cannot read the header: {exc}") from None
    except OSError as exc:
        raise _fail(path, None, None, f"cannot read the file: {exc}") from None


def _malformed_rows(path: str, n_fields: int) -> Iterator[tuple[int, int, int]]:
    """(first line, number of lines, number of fields) of each row with a wrong count.

    The standard csv module splits records as pyarrow does; it runs only when pyarrow
    has rejected a row, and only as far as the rows being placed.
    """
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            next(reader)
            start = reader.line_num + 1
            for record in reader:
                end = reader.line_num
                # An empty record is a blank line: pyarrow keeps it as a row of nulls.
                if record and len(record) != n_fields:
                    yield start, end - start + 1, len(record)
                start = end + 1
        except (csv.Error, StopIteration):
            return


class _LineTracker:
    """Physical lines of the rows pyarrow delivers from one file, in order."""

    def __init__(self, path: str, first_line: int, n_fields: int) -> None:
        self.path = path
        self.next_line = first_line
        self.n_fields = n_fields
        self.reported = 0  # rows pyarrow rejected so far (since the last reopen)
        self.located = 0  # rejected rows already placed
        self._spans: Iterator[tuple[int, int, int]] | None = None
        self._peeked: tuple[int, int, int] | None = None

    def on_invalid_row(self, row: object) -> str:
        self.reported += 1
        return "skip"

    def _peek(self) -> tuple[int, int, int] | None:
        if self._peeked is None:
            if self._spans is None:
                self._spans = _malformed_rows(self.path, self.n_fields)
            self._peeked = next(self._spans, None)
        return self._peeked

    def place(
        self, heights: np.ndarray | None, n: int
    ) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Lines of the next ``n`` rows, and the rejected rows met among them."""
        if heights is None:
            base = self.next_line + np.arange(n, dtype=np.int64)
            end = self.next_line + n
        else:
            base = np.empty(n, dtype=np.int64)
            base[:1] = self.next_line
            np.cumsum(heights[:-1], out=base[1:])
            base[1:] += self.next_line
            end = self.next_line + int(heights.sum())
        rejected: list[tuple[int, int]] = []
        shift = 0
        bumps = np.zeros(n + 1, dtype=np.int64)
        last = 0
        while self.reported > self.located:
            span = self._peek()
            if span is None or span[0] >= end + shift:
                break
            start, height, fields = span
            at = max(int(np.searchsorted(base, start - shift)), last)
            bumps[at] += height
            shift += height
            last = at
            rejected.append((start, fields))
            self.located += 1
            self._peeked = None
        self.next_line = end + shift
        if shift:
            base = base + np.cumsum(bumps[:n])
        return base, rejected

    def close(self) -> None:
        """Close the file of the second pass, if one was opened."""
        if self._spans is not None:
            self._spans.close()  # type: ignore[attr-defined]

    def leftover(self) -> list[tuple[int | None, int | None]]:
        """Rejected rows after the last delivered row (at the end of the file)."""
        rest: list[tuple[int | None, int | None]] = []
        while self.reported > self.located:
            span = self._peek()
            self.located += 1
            self._peeked = None
            rest.append((None, None) if span is None else (span[0], span[2]))
        return rest


def _row_heights(batch: pa.RecordBatch, names: Iterable[str]) -> np.ndarray | None:
    """Physical lines taken by each row (1 + newlines in its quoted values)."""
    pa, pc, _ = _arrow()
    extra = None
    for name in names:
        arr = batch.column(name)
        if arr.null_count == len(arr):
            continue
        has_lf = pc.any(pc.match_substring(arr, "\n")).as_py()
        has_cr = pc.any(pc.match_substring(arr, "\r")).as_py()
        if not (has_lf or has_cr):
            continue
        count = pc.count_substring(arr, "\n")
        if has_cr:
            # \r\n is one line break, a lone \r another.
            count = pc.add(
                count, pc.subtract(pc.count_substring(arr, "\r"), pc.count_substring(arr, "\r\n"))
            )
        count = count.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        extra = count if extra is None else extra + count
    return None if extra is None else extra + 1


def _blank_rows(batch: pa.RecordBatch) -> np.ndarray | None:
    """Rows where every field is empty: blank lines, which the parser keeps as rows."""
    if min(col.null_count for col in batch.columns) == 0:
        return None
    blank = np.ones(batch.num_rows, dtype=bool)
    for col in batch.columns:
        blank &= col.is_null().to_numpy(zero_copy_only=False)
    return blank if blank.any() else None


_ARROW_TYPES = {"float": "float64", "int": "int64", "bool": "bool_", "string": "string"}


def _arrow_type(kind: str) -> pa.DataType:
    return getattr(_arrow()[0], _ARROW_TYPES[kind])()


def _arrow_csv_batches(
    path: str,
    names: list[str],
    types: dict[str, pa.DataType],
    on_invalid_row: Any,
    skip: int,
    block_size: int,
) -> Iterator[pa.RecordBatch]:
    """pyarrow's streaming CSV reader over ``path``, dropping the first ``skip`` rows."""
    pa, _, pcsv = _arrow()
    stream = pa.input_stream(path, compression="detect")
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(use_threads=False, block_size=block_size),
            # Blank lines stay rows so that every physical line is accounted for;
            # newlines_in_values lets quoted values hold newlines at block boundaries.
            parse_options=pcsv.ParseOptions(
                invalid_row_handler=on_invalid_row,
                ignore_empty_lines=False,
                newlines_in_values=True,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=types, include_columns=names, strings_can_be_null=True
            ),
        )
        if reader.schema.names != names:
            raise _fail(path, 1, None, "pyarrow and the csv module disagree on the header")
        for batch in reader:
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            if skip:
                batch = batch.slice(skip)
                skip = 0
            yield batch
    finally:
        stream.close()


def _row_too_long(exc: Exception, block_size: int) -> bool:
    """Whether pyarrow failed on a row longer than its block, and the block may grow."""
    return "straddl" in str(exc) and block_size < _MAX_BLOCK_SIZE


def _first_rows(path: str, names: list[str], n: int) -> pa.Table:
    """The first ``n`` rows of a file, every field as bytes."""
    pa = _arrow()[0]
    types = {name: pa.binary() for name in names}
    block_size = _BLOCK_SIZE
    while True:
        batches, rows = [], 0
        try:
            for batch in _arrow_csv_batches(path, names, types, lambda row: "skip", 0, block_size):
                batches.append(batch)
                rows += batch.num_rows
                if rows >= n:
                    break
        except pa.ArrowInvalid as exc:
            if not _row_too_long(exc, block_size):
                raise
            block_size *= 4
            continue
        break
    if not batches:
        return pa.table({name: pa.array([], pa.binary()) for name in names})
    return pa.Table.from_batches(batches).slice(0, n)


def _infer_kinds(files: list[str], layout: _Layout, opts: _Options) -> None:
    """Fix the type of every used column from the first chunk of the stream.

    That is the first ``chunksize`` rows of the first file, or of the first file
    with a row when the first ones hold only a header (or blank lines).

    The target takes the narrowest of int, float, bool and string that reads every
    value. A feature is a number when most of its values read as numbers (the others
    are then bad values); otherwise it is text, which needs ``as_frame=True``.
    """
    pa, pc, pcsv = _arrow()
    for path in files:
        names, _ = _read_csv_header(path)
        if path != layout.source:
            _check_same_columns(path, names, layout, "line")
        try:
            first = _first_rows(path, names, opts.chunksize)
        except pa.ArrowInvalid as exc:
            raise _fail(path, None, None, f"pyarrow cannot read the file: {exc}") from None
        blank = _blank_rows(first.combine_chunks().to_batches()[0]) if first.num_rows else None
        if blank is not None:
            first = first.filter(pa.array(~blank))
        if first.num_rows:
            break
    else:
        # No row anywhere: nothing will be converted, so any type does.
        layout.kinds.update(dict.fromkeys(layout.used, "float"))
        return
    options = pcsv.ConvertOptions()
    for name in layout.used:
        raw = first.column(name).combine_chunks().drop_null()
        text, bad_utf8 = _cast_locating(raw, pa.string())
        if bad_utf8 is not None:
            text = text.drop_null()
        trimmed = pc.utf8_trim_whitespace(text)
        if name == layout.target:
            if len(raw) == 0:
                raise _fail(
                    path,
                    None,
                    name,
                    "the first chunk holds no target value to infer the label type from",
                )
            kind = "string"
            if bad_utf8 is None:
                for candidate, to in (("int", pa.int64()), ("float", pa.float64())):
                    if _casts(trimmed, to):
                        kind = candidate
                        break
                else:
                    known = pa.array(options.true_values + options.false_values)
                    if pc.all(pc.is_in(text, value_set=known)).as_py():
                        kind = "bool"
        else:
            bad = _cast_locating(trimmed, pa.float64())[1]
            n_bad = (0 if bad is None else int(bad.sum())) + len(raw) - len(text)
            numeric = 2 * n_bad < len(raw) or len(raw) == 0
            kind = "float" if numeric or not opts.as_frame else "string"
            if not numeric and not opts.as_frame:
                layout.not_numeric.add(name)
        layout.kinds[name] = kind


def _iter_csv_file(
    path: str, names: list[str], header_lines: int, layout: _Layout, opts: _Options
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Blocks of good rows of one file, with their lines; bad rows raised or reported."""
    pa, _, _ = _arrow()
    tracker = _LineTracker(path, header_lines + 1, len(names))
    used = layout.used
    typed = {n: _arrow_type(layout.kinds[n]) if n in layout.kinds else pa.binary() for n in names}
    text_columns = [n for n in names if n not in layout.kinds or layout.kinds[n] == "string"]
    checked = _ALWAYS_CHECK
    block_size = _BLOCK_SIZE
    done = 0
    try:
        while True:
            tracker.reported = 0
            types = {n: pa.binary() for n in names} if checked else typed
            try:
                for batch in _arrow_csv_batches(
                    path, names, types, tracker.on_invalid_row, done, block_size
                ):
                    heights = _row_heights(batch, names if checked else text_columns)
                    lines, rejected = tracker.place(heights, batch.num_rows)
                    arrays, failures = {}, {}
                    for name in used:
                        arr = batch.column(name)
                        if checked:
                            arr, fail = _parse_text(arr, layout.kinds[name])
                            if fail is not None:
                                failures[name] = fail
                        arrays[name] = arr
                    raw = {n: batch.column(n) for n in used} if checked else None
                    good, items = _screen(
                        arrays, failures, raw, layout, opts, lines, _blank_rows(batch)
                    )
                    items += [
                        (line, None, f"expected {len(names)} fields, saw {fields}", False)
                        for line, fields in rejected
                    ]
                    block = pa.RecordBatch.from_arrays([arrays[n] for n in used], names=used)
                    yield from _settle(path, block, lines, good, items, opts, "line")
                    done += batch.num_rows
            except pa.ArrowInvalid as exc:
                if _row_too_long(exc, block_size):
                    block_size *= 4
                    continue
                if checked:
                    raise _fail(
                        path,
                        tracker.next_line,
                        None,
                        f"pyarrow cannot read the file from this line on: {exc}",
                    ) from None
                # A value the typed reader could not convert: go on from the same row on
                # the checked path, which pins it to its line.
                checked = True
                continue
            except OSError as exc:
                raise _fail(
                    path, tracker.next_line, None, f"cannot read the file: {exc}"
                ) from None
            break
        items = [
            (line, None, f"expected {len(names)} fields, saw {fields}", False)
            for line, fields in tracker.leftover()
        ]
        if items:
            empty = np.zeros(0, dtype=np.int64)
            yield from _settle(path, None, empty, empty.astype(bool), items, opts, "line")
    finally:
        tracker.close()


def _read_csv_stream(paths: Any, opts: _Options, stream: _ChunkStream) -> Iterator[StreamChunk]:
    assembler = _Assembler(opts)
    layout = None
    files = _resolve_paths(paths)
    for path in files:
        names, header_lines = _read_csv_header(path)
        if layout is None:
            layout = _select_columns(path, names, opts, 1, "line")
            _infer_kinds(files, layout, opts)
            assembler.layout = layout
            stream.features = list(layout.features)
        else:
            _check_same_columns(path, names, layout, "line")
        for block, lines in _iter_csv_file(path, names, header_lines, layout, opts):
            yield from assembler.push(block, lines, path)
        yield from assembler.flush(path)


def read_csv(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    target: str | None,
    chunksize: int = 10_000,
    features: list[str] | None = None,
    on_bad_rows: str = "raise",
    allow_nan: bool = False,
    as_frame: bool = False,
    report: BadRowReport | None = None,
) -> Iterator[StreamChunk]:
    """Read labelled rows from CSV files in chunks, with memory bounded by the chunk.

    Parameters
    ----------
    paths : str, path-like or list of them
        One file, a list of files, or glob patterns (their matches are read in sorted
        order; a pattern that matches nothing is an error). Files ending in ``.gz``
        (or another suffix pyarrow knows, such as ``.bz2``) are decompressed on the fly.
    target : str or None
        Name of the label column; None for a stream without labels (for prediction),
        whose chunks have ``y=None``.
    chunksize : int, default=10_000
        Rows per chunk. A chunk never spans two files, so the last chunk of each file
        may be shorter.
    features : list of str, default=None
        Feature columns, in the order wanted in ``X``; None takes every column but the
        target, in file order.
    on_bad_rows : {"raise", "skip"}, default="raise"
        ``"raise"`` stops with :class:`StreamError` at the first bad row, before
        yielding the chunk that would hold it. ``"skip"`` drops bad rows, goes on and
        records each in the report.
    allow_nan : bool, default=False
        Let missing features through as NaN. A missing target is always a bad row.
    as_frame : bool, default=False
        Yield ``X`` as a pandas DataFrame, where text feature columns stay text (for
        pipelines that encode them). With False, every feature must be numeric.
    report : BadRowReport, default=None
        Where dropped rows are recorded; a new one when None. Either way it is the
        ``report`` attribute of the returned iterator.

    Returns
    -------
    chunks : iterator of StreamChunk
        Lazy: files are opened and checked while iterating, the header of the first
        file on the first ``next()``. It has a ``report`` attribute (the
        :class:`BadRowReport`), a ``features`` attribute (the names of the columns of
        ``X``, once the first header is read) and a ``close()`` method.

    Raises
    ------
    StreamError
        While iterating, for bad input; the message names the file, the line and the
        column.

    See Also
    --------
    read_parquet : The same for Parquet files.
    iter_chunks : The same for data already in memory.

    Notes
    -----
    Types are fixed by the first chunk of the stream (the first ``chunksize`` rows of
    the first file that has rows) and held for the whole stream. Features are
    float64: a column of integers that later holds ``2.5`` is fine, one that later
    holds ``abc`` has a bad row. The target takes the narrowest of int64, float64,
    bool and str that reads all its first-chunk values, and keeps it: an int64 target
    that later holds ``2.5`` has a bad row.

    Bad rows are: a wrong number of fields, a value that does not read as its
    column's type, a missing target, a missing feature unless ``allow_nan``. Empty
    fields and pyarrow's null markers (``NA``, ``NaN``, ``null``...) are missing. A
    row whose every field is empty (a blank line) holds nothing and is passed over,
    as pandas and pyarrow do, without counting as bad. Every later file must have the
    same header as the first; a column missing, moved or added is an error.

    Line numbers count physical lines, the header being line 1; see the module
    documentation for how they are found. ``StreamChunk.rows`` holds the line of each
    row.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from skocl.stream import read_csv
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.csv"
    >>> _ = path.write_text("a,b,y\\n1,2,0\\n3,4,1\\n5,6,0\\n")
    >>> for chunk in read_csv(path, target="y", chunksize=2):
    ...     print(chunk.X.tolist(), chunk.y.tolist(), chunk.first_line)
    [[1.0, 2.0], [3.0, 4.0]] [0, 1] 2
    [[5.0, 6.0]] [0] 4

    Bad rows are reported with their line and column:

    >>> _ = path.write_text("a,b,y\\n1,2,0\\n3,x,1\\n5,6\\n7,8,1\\n")
    >>> stream = read_csv(path, target="y", on_bad_rows="skip")
    >>> [chunk.X.tolist() for chunk in stream]
    [[[1.0, 2.0], [7.0, 8.0]]]
    >>> stream.report.count
    2
    >>> [(line, column, reason) for _, line, column, reason in stream.report.rows]
    [(3, 'b', "cannot read 'x' as a number"), (4, None, 'expected 3 fields, saw 2')]
    """
    features = None if features is None else list(features)
    _check_params(chunksize, on_bad_rows, target, features)
    report = BadRowReport() if report is None else report
    opts = _Options(
        target,
        features,
        int(chunksize),
        on_bad_rows,
        bool(allow_nan),
        bool(as_frame),
        report,
    )
    stream = _ChunkStream(report, target)
    stream._chunks = _read_csv_stream(paths, opts, stream)
    return stream


# ------------------------------------------------------------------ Parquet reading


def _family(dtype: pa.DataType) -> str:
    pa = _arrow()[0]
    types = pa.types
    if types.is_dictionary(dtype):
        dtype = dtype.value_type
    if types.is_boolean(dtype):
        return "bool"
    if types.is_integer(dtype):
        return "int"
    if types.is_floating(dtype) or types.is_decimal(dtype):
        return "float"
    if (
        types.is_string(dtype)
        or types.is_large_string(dtype)
        or (hasattr(types, "is_string_view") and types.is_string_view(dtype))
    ):
        return "string"
    if types.is_null(dtype):
        return "null"
    return "other"


def _parquet_kinds(
    path: str, schema: pa.Schema, layout: _Layout, opts: _Options, first: bool
) -> None:
    """Fix column kinds from the first file's schema; check later files against them."""
    for name in layout.used:
        family = _family(schema.field(name).type)
        if name == layout.target:
            kind = {"null": "float", "other": "string"}.get(family, family)
        elif family in ("int", "float", "bool", "null"):
            kind = "float"
        elif opts.as_frame:
            kind = "string"
        else:
            raise _fail(
                path,
                None,
                name,
                f"the column holds {schema.field(name).type}, not numbers: read it with "
                "as_frame=True, or leave it out of features",
            )
        if first:
            layout.kinds[name] = kind
        elif kind != layout.kinds[name] and family != "null":
            raise _fail(
                path,
                None,
                name,
                f"the column holds {schema.field(name).type} here but "
                f"{_KIND_TEXT[layout.kinds[name]]} in {os.path.basename(layout.source)}",
            )


def _iter_parquet_file(
    path: str, layout: _Layout, opts: _Options
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    pa, pc, _ = _arrow()
    import pyarrow.parquet as pq

    used = layout.used
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _fail(path, None, None, f"not a readable Parquet file: {exc}") from None
    with parquet:
        row = 1
        for batch in parquet.iter_batches(
            batch_size=opts.chunksize, columns=used, use_threads=False
        ):
            n = batch.num_rows
            lines = row + np.arange(n, dtype=np.int64)
            row += n
            arrays, failures = {}, {}
            for name in used:
                arr = batch.column(name)
                if pa.types.is_dictionary(arr.type):
                    arr = arr.dictionary_decode()
                kind = layout.kinds[name]
                if kind == "float":
                    arr = pc.cast(arr, pa.float64(), safe=False)
                else:
                    arr, fail = _cast_locating(arr, _arrow_type(kind))
                    if fail is not None:
                        failures[name] = fail
                arrays[name] = arr
            raw = {name: batch.column(name) for name in used}
            good, items = _screen(arrays, failures, raw, layout, opts, lines, None)
            block = pa.RecordBatch.from_arrays([arrays[n] for n in used], names=used)
            yield from _settle(path, block, lines, good, items, opts, "row")


def _read_parquet_stream(
    paths: Any, opts: _Options, stream: _ChunkStream
) -> Iterator[StreamChunk]:
    pa = _arrow()[0]
    import pyarrow.parquet as pq

    assembler = _Assembler(opts)
    layout = None
    for path in _resolve_paths(paths):
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise _fail(path, None, None, f"not a readable Parquet file: {exc}") from None
        names = list(schema.names)
        if layout is None:
            layout = _select_columns(path, names, opts, None, "row")
            _parquet_kinds(path, schema, layout, opts, first=True)
            assembler.layout = layout
            stream.features = list(layout.features)
        else:
            _check_same_columns(path, names, layout, "row")
            _parquet_kinds(path, schema, layout, opts, first=False)
        for block, lines in _iter_parquet_file(path, layout, opts):
            yield from assembler.push(block, lines, path)
        yield from assembler.flush(path)


def read_parquet(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    target: str | None,
    chunksize: int = 10_000,
    features: list[str] | None = None,
    on_bad_rows: str = "raise",
    allow_nan: bool = False,
    as_frame: bool = False,
    report: BadRowReport | None = None,
) -> Iterator[StreamChunk]:
    """Read labelled rows from Parquet files in chunks.

    Batches come from :meth:`pyarrow.parquet.ParquetFile.iter_batches`, so memory is
    bounded by a row group of the file and the chunk, not by the file.

    Parameters
    ----------
    paths : str, path-like or list of them
        One file, a list of files, or glob patterns (matches in sorted order).
    target : str or None
        Name of the label column; None for a stream without labels.
    chunksize : int, default=10_000
        Rows per chunk; a chunk never spans two files.
    features : list of str, default=None
        Feature columns in the order wanted; None takes every column but the target.
    on_bad_rows : {"raise", "skip"}, default="raise"
        As in :func:`read_csv`.
    allow_nan : bool, default=False
        Let missing features through as NaN; a missing target is always bad.
    as_frame : bool, default=False
        Yield ``X`` as a pandas DataFrame; text columns then stay text.
    report : BadRowReport, default=None
        Where dropped rows are recorded; the ``report`` attribute of the iterator.

    Returns
    -------
    chunks : iterator of StreamChunk
        Lazy, with ``report`` and ``close()`` as for :func:`read_csv`.

    See Also
    --------
    read_csv : The same for CSV files, with the rules in full.

    Notes
    -----
    Parquet files have types and no lines: "line" in messages, ``first_line`` and
    ``rows`` is the 1-based row number in the file. Numeric and boolean feature
    columns become float64; text features need ``as_frame=True``. A later file whose
    column holds another kind of value (text where the first file had numbers, or
    floats where it had integer labels) is an error; integer widths may differ.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> from skocl.stream import read_parquet
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.parquet"
    >>> pq.write_table(pa.table({"a": [1, 3, 5], "y": ["no", "yes", "no"]}), path)
    >>> [(c.X.ravel().tolist(), c.y.tolist()) for c in read_parquet(path, target="y",
    ...                                                             chunksize=2)]
    [([1.0, 3.0], ['no', 'yes']), ([5.0], ['no'])]
    """
    features = None if features is None else list(features)
    _check_params(chunksize, on_bad_rows, target, features)
    report = BadRowReport() if report is None else report
    opts = _Options(
        target,
        features,
        int(chunksize),
        on_bad_rows,
        bool(allow_nan),
        bool(as_frame),
        report,
    )
    stream = _ChunkStream(report, target)
    stream._chunks = _read_parquet_stream(paths, opts, stream)
    return stream


# ------------------------------------------------------------------- in-memory data


def _is_pandas_frame(data: object) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def _is_polars_frame(data: object) -> bool:
    pl = sys.modules.get("polars")
    return pl is not None and isinstance(data, pl.DataFrame)


def _object_missing(values: np.ndarray) -> np.ndarray:
    pd = sys.modules.get("pandas")
    if pd is not None:
        return np.asarray(pd.isna(values), dtype=bool)
    return np.array([v is None or v != v for v in values], dtype=bool)


def _labels_missing(y: np.ndarray) -> np.ndarray | None:
    if y.dtype.kind in "fc":
        mask = np.isnan(y)
    elif y.dtype.kind == "O":
        mask = _object_missing(y)
    else:
        return None
    return mask if mask.any() else None


def _check_labels(y: np.ndarray, source: str, column: str | None, start: int) -> None:
    missing = _labels_missing(y)
    if missing is not None:
        i = start + int(np.flatnonzero(missing)[0])
        raise _fail(source, None, column, f"missing target value in row {i} (0-based)")


def _frame_chunks(
    data: Any, target: str | None, chunksize: int, as_frame: bool, polars: bool
) -> Iterator[StreamChunk]:
    source = "<polars.DataFrame>" if polars else "<DataFrame>"
    if target is not None and target not in list(data.columns):
        raise _fail(source, None, target, "no such column (the target)")
    features = [name for name in data.columns if name != target]
    for name in features:
        dtype = data.schema[name] if polars else data[name].dtype
        if polars:
            import polars as pl

            numeric = dtype.is_numeric() or dtype == pl.Boolean
        else:
            import pandas as pd

            numeric = pd.api.types.is_numeric_dtype(dtype)
        if not numeric and not as_frame:
            raise _fail(
                source,
                None,
                str(name),
                f"the column holds {dtype}, not numbers: pass as_frame=True, or drop it",
            )
    n = len(data)
    for index, start in enumerate(range(0, n, chunksize)):
        if polars:
            part = data.slice(start, chunksize)
            X_part = part.select(features)
            X = X_part.to_pandas() if as_frame else X_part.to_numpy().astype(np.float64)
        else:
            part = data.iloc[start : start + chunksize]
            X_part = part[features]
            X = X_part if as_frame else X_part.to_numpy(dtype=np.float64, na_value=np.nan)
        y = None if target is None else _frame_labels(part, target, source, start, polars)
        yield StreamChunk(X, y, source, None, index, None)


def _frame_labels(part: Any, target: str, source: str, start: int, polars: bool) -> np.ndarray:
    """The labels of a DataFrame slice as numpy; a missing one is an error."""
    if polars:
        column = part.get_column(target)
        missing = column.is_null().to_numpy()
        if column.dtype.is_float():
            missing = missing | column.is_nan().fill_null(True).to_numpy()
    else:
        column = part[target]
        missing = column.isna().to_numpy()
    if missing.any():
        i = start + int(np.flatnonzero(missing)[0])
        raise _fail(source, None, target, f"missing target value in row {i} (0-based)")
    if polars:
        return column.to_numpy()
    dtype = column.dtype
    if not isinstance(dtype, np.dtype) and getattr(dtype, "kind", "O") in "iufb":
        # Masked (nullable) columns without missing values become plain numpy ones.
        return column.to_numpy(dtype=dtype.numpy_dtype)
    return column.to_numpy()


def _array_chunks(X: Any, y: Any, chunksize: int, as_frame: bool) -> Iterator[StreamChunk]:
    source = "<ndarray>"
    X = np.asarray(X)
    if X.ndim != 2:
        raise _fail(source, None, None, f"X must be 2-D, got an array of shape {X.shape}")
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise _fail(
                source,
                None,
                None,
                f"y must be 1-D with one label per row of X: shapes {X.shape}, {y.shape}",
            )
    numeric = X.dtype.kind in "biuf"
    if not numeric and X.dtype.kind != "O":
        raise _fail(source, None, None, f"X holds {X.dtype}, not numbers")
    for index, start in enumerate(range(0, len(X), chunksize)):
        part = X[start : start + chunksize]
        if as_frame:
            import pandas as pd

            features = pd.DataFrame(part)
            features.index = range(start, start + len(part))
        else:
            try:
                features = part.astype(np.float64)
            except (TypeError, ValueError):
                for j in range(part.shape[1]):
                    for i, value in enumerate(part[:, j]):
                        try:
                            float(value)
                        except (TypeError, ValueError):
                            raise _fail(
                                source,
                                None,
                                str(j),
                                f"cannot read {_show(value)} in row {start + i} (0-based) "
                                "as a number",
                            ) from None
                raise
        labels = None
        if y is not None:
            labels = y[start : start + chunksize]
            _check_labels(labels, source, None, start)
        yield StreamChunk(features, labels, source, None, index, None)


def iter_chunks(
    data: Any,
    y: Any = None,
    *,
    target: str | None = None,
    chunksize: int = 10_000,
    as_frame: bool = False,
) -> Iterator[StreamChunk]:
    """Cut in-memory data into chunks: the in-memory twin of :func:`read_csv`.

    Parameters
    ----------
    data : pandas.DataFrame, polars.DataFrame or array-like of shape (n_samples, n_features)
        The rows. A DataFrame takes its labels from the ``target`` column (or from
        ``y``); an array takes them from ``y``.
    y : array-like of shape (n_samples,), default=None
        Labels, when they are not a column of ``data``.
    target : str, default=None
        Name of the label column of a DataFrame.
    chunksize : int, default=10_000
        Rows per chunk; the last may be shorter.
    as_frame : bool, default=False
        Yield ``X`` as a pandas DataFrame (a slice of the given one), so that text
        columns can pass to a pipeline.

    Returns
    -------
    chunks : iterator of StreamChunk
        Lazy; ``first_line`` and ``rows`` are None. It has a ``report`` attribute
        (always empty: nothing is skipped here) like the file readers.

    Raises
    ------
    StreamError
        While iterating: a target column that does not exist, a feature column that is
        not numeric (with ``as_frame=False``), a missing label.

    Notes
    -----
    Chunks are slices: only one chunk at a time is converted to float64, never the
    whole of ``data``. NaN in features passes through (the estimator decides);
    ``as_frame=True`` with a polars DataFrame yields pandas DataFrames.

    Examples
    --------
    >>> import numpy as np
    >>> from skocl.stream import iter_chunks
    >>> X = np.arange(10).reshape(5, 2)
    >>> [(c.X.shape, c.y.tolist()) for c in iter_chunks(X, [0, 1, 0, 1, 1], chunksize=2)]
    [((2, 2), [0, 1]), ((2, 2), [0, 1]), ((1, 2), [1])]
    """
    _check_params(chunksize)
    if target is not None and y is not None:
        raise ValueError("give the labels either as y or as the target column, not both")
    stream = _ChunkStream(BadRowReport(), target)
    if _is_pandas_frame(data) or _is_polars_frame(data):
        polars = _is_polars_frame(data)
        stream.features = [name for name in data.columns if name != target]
        stream._chunks = _frame_chunks(data, target, int(chunksize), bool(as_frame), polars)
        if y is not None:
            stream._chunks = _with_labels(stream._chunks, np.asarray(y), len(data))
    else:
        if target is not None:
            raise ValueError("target names a column: it needs a pandas or polars DataFrame")
        stream._chunks = _array_chunks(data, y, int(chunksize), bool(as_frame))
    return stream


def _with_labels(chunks: Iterator[StreamChunk], y: np.ndarray, n: int) -> Iterator[StreamChunk]:
    if y.ndim != 1 or len(y) != n:
        raise _fail("<DataFrame>", None, None, f"y must be 1-D with {n} labels, got {y.shape}")
    start = 0
    for chunk in chunks:
        labels = y[start : start + len(chunk.X)]
        _check_labels(labels, chunk.source, None, start)
        start += len(chunk.X)
        yield chunk._replace(y=labels)


# ------------------------------------------------------------------------- dispatch


def _format_of(path: str) -> str:
    name = path.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    raise ValueError(
        f"cannot tell the format of {path!r} from its name: call read_csv or read_parquet"
    )


def open_stream(
    source: Any, *, target: str | None, chunksize: int = 10_000, **kwargs: Any
) -> Iterator[StreamChunk]:
    """Open any supported source as a stream of chunks.

    Parameters
    ----------
    source : str, path-like, list of them, DataFrame, ndarray or (X, y) tuple
        Files (``.csv``, ``.csv.gz``, ``.parquet``; glob patterns allowed; the format
        is told by the name) or in-memory data.
    target : str or None
        The label column, as in :func:`read_csv`; None for arrays (labels come in the
        ``(X, y)`` tuple) and for streams without labels.
    chunksize : int, default=10_000
        Rows per chunk.
    **kwargs
        Passed to :func:`read_csv`, :func:`read_parquet` or :func:`iter_chunks`.

    Returns
    -------
    chunks : iterator of StreamChunk
        With a ``report`` attribute, as the reader it dispatches to.

    See Also
    --------
    read_csv, read_parquet, iter_chunks : The readers this dispatches to.

    Examples
    --------
    >>> import pandas as pd
    >>> from skocl.stream import open_stream
    >>> frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": ["x", "y", "x"]})
    >>> [c.y.tolist() for c in open_stream(frame, target="label", chunksize=2)]
    [['x', 'y'], ['x']]
    """
    if _is_pandas_frame(source) or _is_polars_frame(source):
        return iter_chunks(source, target=target, chunksize=chunksize, **kwargs)
    if (
        isinstance(source, tuple)
        and len(source) == 2
        and not isinstance(source[0], (str, os.PathLike))
    ):
        if target is not None:
            raise ValueError("with an (X, y) tuple the labels are y: pass target=None")
        return iter_chunks(source[0], source[1], chunksize=chunksize, **kwargs)
    if isinstance(source, np.ndarray):
        if target is not None:
            raise ValueError("an array has no named columns: pass (X, y) and target=None")
        return iter_chunks(source, chunksize=chunksize, **kwargs)
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        return read_csv(items, target=target, chunksize=chunksize, **kwargs)
    formats = {_format_of(os.fspath(item)) for item in items}
    if len(formats) != 1:
        raise ValueError(f"cannot mix formats in one stream: {sorted(formats)}")
    reader = read_parquet if formats == {"parquet"} else read_csv
    return reader(
        items if len(items) > 1 else items[0], target=target, chunksize=chunksize, **kwargs
    )
