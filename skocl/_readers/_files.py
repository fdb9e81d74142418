"""The one file loop that the CSV and Parquet readers share.

A file format (:class:`_FileFormat`) knows how to read a header, fix the column types
and cut a file into converted blocks; everything else is here, once: resolving paths
and patterns, choosing the columns from the first header, checking every later header
against it, and cutting blocks into chunks of exactly ``chunksize`` rows.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from ._screen import _check_same_columns, _label_matrix, _Layout, _select_columns
from ._types import StreamChunk, StreamError, _arrow, _ChunkStream, _fail, _Options

if TYPE_CHECKING:
    import pyarrow as pa


class _Header(NamedTuple):
    """What a format reads at the start of a file."""

    names: list[str]
    # Where errors about the header point: line 1 of a CSV file, nothing in Parquet.
    line: int | None
    # What the format needs again later: the lines the header takes, the schema.
    info: Any


class _FileFormat(Protocol):
    """How one kind of file is read; the loop in :func:`_read_files` does the rest."""

    # What a position in a file is called in messages: "line" or "row".
    unit: str

    def header(self, path: str) -> _Header: ...

    def fix_kinds(self, files: list[str], header: _Header, layout: _Layout, opts: _Options):
        """Set ``layout.kinds`` for the stream, from its first file."""

    def check_kinds(self, path: str, header: _Header, layout: _Layout, opts: _Options):
        """Check that a later file holds the kinds of values the first one fixed."""

    def blocks(
        self, path: str, header: _Header, layout: _Layout, opts: _Options
    ) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        """Blocks of good rows of the used columns, with the line of each row."""


def _directory_error(name: str) -> StreamError:
    example = os.path.join(name, "*.csv")
    return _fail(
        name,
        None,
        None,
        f"is a directory, not a data file (a pattern such as {example!r} reads the files in it)",
    )


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
        elif os.path.isdir(name):
            raise _directory_error(name)
        else:
            raise _fail(name, None, None, "no such file")
    return files


class _Assembler:
    """Cuts blocks of good rows into chunks of exactly ``chunksize`` rows."""

    def __init__(self, opts: _Options, layout: _Layout) -> None:
        self.opts = opts
        self.layout = layout
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
        if self.opts.as_frame:
            X = table.select(layout.features).to_pandas()
            X.index = range(self.offset, self.offset + n)
        else:
            X = np.empty((n, len(layout.features)), dtype=np.float64)
            for j, name in enumerate(layout.features):
                X[:, j] = table.column(name).to_numpy()
        y = _labels(table, layout)
        rows = np.concatenate(lines).astype(np.int64, copy=False)
        chunk = StreamChunk(X, y, source, int(rows[0]), self.index, rows)
        self.index += 1
        self.offset += n
        return chunk


def _labels(table: pa.Table, layout: _Layout) -> np.ndarray | None:
    """``y`` of a chunk: the target column, or a column per target (see
    :func:`_label_matrix`)."""
    if not layout.several:
        return table.column(layout.targets[0]).to_numpy() if layout.targets else None
    columns = []
    for name in layout.targets:
        column = table.column(name)
        if layout.kinds[name] == "float":
            columns.append(column.to_numpy())  # NaN where a label is missing
        else:
            columns.append(np.array(column.to_pylist(), dtype=object))  # None there
    return _label_matrix(columns)


def _read_files(
    fmt: _FileFormat, paths: Any, opts: _Options, stream: _ChunkStream
) -> Iterator[StreamChunk]:
    """The chunks of every file in turn; the first file fixes the columns and types."""
    files = _resolve_paths(paths)
    assembler = None
    for path in files:
        header = fmt.header(path)
        if assembler is None:
            layout = _select_columns(path, header.names, opts, header.line, fmt.unit)
            fmt.fix_kinds(files, header, layout, opts)
            assembler = _Assembler(opts, layout)
            stream.features = list(layout.features)
        else:
            layout = assembler.layout
            _check_same_columns(path, header.names, layout, fmt.unit)
            fmt.check_kinds(path, header, layout, opts)
        yield from _guarded(fmt, path, header, layout, opts, assembler)


def _guarded(
    fmt: _FileFormat,
    path: str,
    header: _Header,
    layout: _Layout,
    opts: _Options,
    assembler: _Assembler,
) -> Iterator[StreamChunk]:
    """The chunks of one file; what the format did not foresee still names the file.

    A corrupt file (a damaged gzip stream, a Parquet page that does not decode) makes
    pyarrow raise where the format cannot say which row is at fault: the error then
    says after which row reading stopped.
    """
    pa = _arrow()[0]
    last = None
    try:
        for block, lines in fmt.blocks(path, header, layout, opts):
            if len(lines):
                last = int(lines[-1])
            yield from assembler.push(block, lines, path)
        yield from assembler.flush(path)
    except (OSError, pa.ArrowException) as exc:
        after = "" if last is None else f" after {fmt.unit} {last}"
        raise _fail(path, None, None, f"cannot read the file{after}: {exc}") from None


def _open_files(fmt: _FileFormat, paths: Any, opts: _Options) -> _ChunkStream:
    """The lazy stream over ``paths``: nothing is opened before the first ``next()``."""
    stream = _ChunkStream(opts.report, opts.target)
    stream._chunks = _read_files(fmt, paths, opts, stream)
    return stream
