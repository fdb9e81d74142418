"""CSV files: pyarrow's streaming reader, a typed fast path and a checked careful one.

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

How rows get their line numbers is told in ``_lines.py``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ._files import _Header, _open_files
from ._lines import (
    _blank_rows,
    _LineTracker,
    _not_utf8,
    _open_text,
    _row_heights,
    _unclosed_quote,
    _unreadable_row,
)
from ._screen import (
    _arrow_type,
    _Block,
    _cast_locating,
    _casts,
    _check_same_columns,
    _Item,
    _Layout,
    _parse_text,
    _settle,
    _settle_block,
)
from ._types import FLOAT32_MAX, BadRowReport, StreamChunk, StreamError, _arrow, _fail, _Options

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class _CsvFormat:
    """How CSV files are parsed; a test or a benchmark passes its own.

    Attributes
    ----------
    block_size : int
        Bytes pyarrow parses at a time. pyarrow's streaming reader holds some 40 blocks
        in flight, so this sets the reader's memory (about 10 MiB here) next to the
        chunk's. ``benchmarks/bench_readers.py`` finds reading as fast from 128 KiB to
        1 MiB. A row longer than a block makes pyarrow fail; the block then grows for
        that file, up to ``max_block_size``.
    max_block_size : int
        The largest block a file may grow to.
    always_check : bool
        Send every file down the checked path, to compare it with the typed one.
    """

    block_size: int = 1 << 18
    max_block_size: int = 1 << 30
    always_check: bool = False
    unit: ClassVar[str] = "line"

    def header(self, path: str) -> _Header:
        names, lines = _read_csv_header(path)
        return _Header(names, 1, lines)

    def fix_kinds(
        self, files: list[str], header: _Header, layout: _Layout, opts: _Options
    ) -> None:
        _infer_kinds(self, files, layout, opts)

    def check_kinds(self, path: str, header: _Header, layout: _Layout, opts: _Options) -> None:
        """Text has no kinds of its own: a later file's values are checked as they come."""

    def blocks(
        self, path: str, header: _Header, layout: _Layout, opts: _Options
    ) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        return _iter_csv_file(self, path, header.names, header.info, layout, opts)

    def row_too_long(self, exc: Exception, block_size: int) -> bool:
        """Whether pyarrow failed on a row longer than its block, and the block may grow."""
        return "straddl" in str(exc) and block_size < self.max_block_size


# What read_csv parses with; tests patch it (small blocks, the checked path).
_CSV = _CsvFormat()


def _read_csv_header(path: str) -> tuple[list[str], int]:
    """The column names and the number of physical lines the header takes."""
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            try:
                names = next(reader)
            except StopIteration:
                raise _fail(path, None, None, "the file is empty (no header line)") from None
            bad = _not_utf8(names)
            if bad is not None:
                field, line, byte = bad
                raise _fail(
                    path,
                    line,
                    None,
                    f"the header is not valid UTF-8: byte 0x{byte:02x} in field {field} "
                    "(save the file as UTF-8)",
                )
            lines = reader.line_num
        end = _unclosed_quote(path, 1) if lines > 1 else None
        if end is not None:
            raise _fail(path, 1, None, "the header: " + _unclosed_reason(1, end))
        return names, lines
    except csv.Error as exc:
        raise _fail(path, 1, None, f"cannot read the header: {exc}") from None
    except OSError as exc:
        raise _fail(path, None, None, f"cannot read the file: {exc}") from None


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


def _first_rows(fmt: _CsvFormat, path: str, names: list[str], n: int) -> pa.Table:
    """The first ``n`` rows of a file, every field as bytes."""
    pa = _arrow()[0]
    types = {name: pa.binary() for name in names}
    block_size = fmt.block_size
    while True:
        batches, rows = [], 0
        try:
            for batch in _arrow_csv_batches(path, names, types, lambda row: "skip", 0, block_size):
                batches.append(batch)
                rows += batch.num_rows
                if rows >= n:
                    break
        except pa.ArrowInvalid as exc:
            if not fmt.row_too_long(exc, block_size):
                raise
            block_size *= 4
            continue
        break
    if not batches:
        return pa.table({name: pa.array([], pa.binary()) for name in names})
    return pa.Table.from_batches(batches).slice(0, n)


def _infer_kinds(fmt: _CsvFormat, files: list[str], layout: _Layout, opts: _Options) -> None:
    """Fix the type of every used column from the first chunk of the stream.

    That is the first ``chunksize`` rows of the first file, or of the first file
    with a row when the first ones hold only a header (or blank lines).

    A target takes the narrowest of int, float, bool and string that reads every
    value. A feature is a number when most of its values read as numbers (the others
    are then bad values); otherwise it is text, which needs ``as_frame=True``.
    """
    pa, pc, pcsv = _arrow()
    for path in files:
        names, _ = _read_csv_header(path)
        if path != layout.source:
            _check_same_columns(path, names, layout, "line")
        try:
            first = _first_rows(fmt, path, names, opts.chunksize)
        except (pa.ArrowException, OSError) as exc:
            raise _parser_failure(path, len(names), None, exc) from None
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
        if name in layout.targets:
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


def _with_last(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[pa.RecordBatch, bool]]:
    """Each batch with whether it is the file's last; the next one is read first."""
    pending = next(batches, None)
    if pending is None:
        return
    for batch in batches:
        yield pending, False
        pending = batch
    yield pending, True


def _parser_items(
    path: str,
    n_fields: int,
    rejected: list[tuple[int | None, int | None, int | None]],
    last_row: tuple[int, int] | None = None,
    at_end: bool = False,
) -> tuple[list[_Item], bool]:
    """The bad rows pyarrow's parser found, and whether the last delivered row is one.

    ``rejected`` holds the rows with a wrong number of fields as (first line, lines,
    fields). At the end of a file (``at_end``), its last record, ``last_row`` (first
    line, lines) or the last rejected row, is checked for a quote that never closes:
    pyarrow then reads everything after the quote as one value, so that record is
    where an unclosed quote ends up. Only a record of several lines is checked (a
    file that ends with a newline puts one in the unclosed value), since the check
    reads the file again up to that record.
    """
    items: list[_Item] = [
        (start, None, f"expected {n_fields} fields, saw {fields}", False)
        for start, _, fields in rejected
    ]
    if not at_end:
        return items, False
    records = [(s, h, k) for k, (s, h, _) in enumerate(rejected) if s is not None]
    if last_row is not None:
        records.append((*last_row, -1))
    if not records:
        return items, False
    start, height, k = max(records)
    end = _unclosed_quote(path, start) if height is None or height > 1 else None
    if end is None:
        return items, False
    reason = _unclosed_reason(start, end)
    if k < 0:
        return [*items, (start, None, reason, False)], True
    items[k] = (start, None, reason, False)
    return items, False


def _unclosed_reason(start: int, end: int) -> str:
    span = f"lines {start}-{end}" if end > start else f"line {start}"
    return (
        f"a quote opened on this line is never closed: {span}, to the end of the file, "
        "read as one row"
    )


def _parser_failure(path: str, n_fields: int, line: int | None, exc: Exception) -> StreamError:
    """The error for a file pyarrow stops reading at or after ``line`` (None: anywhere)."""
    found = _unreadable_row(path, n_fields, line or 1) if "Expected" in str(exc) else None
    if found is None and line is None:
        return _fail(path, None, None, f"pyarrow cannot read the file: {exc}")
    if found is None:
        return _fail(path, line, None, f"pyarrow cannot read the file from this line on: {exc}")
    at, fields, byte = found
    return _fail(
        path,
        at,
        None,
        f"expected {n_fields} fields, saw {fields}, in a row with byte 0x{byte:02x}, which is "
        "not UTF-8: such a row stops the reader whatever on_bad_rows says (save the file "
        "as UTF-8)",
    )


def _iter_csv_file(
    fmt: _CsvFormat,
    path: str,
    names: list[str],
    header_lines: int,
    layout: _Layout,
    opts: _Options,
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Blocks of good rows of one file, with their lines; bad rows raised or reported."""
    pa, _, _ = _arrow()
    tracker = _LineTracker(path, header_lines + 1, len(names))
    used = layout.used
    typed = {n: _arrow_type(layout.kinds[n]) if n in layout.kinds else pa.binary() for n in names}
    text_columns = [n for n in names if n not in layout.kinds or layout.kinds[n] == "string"]
    checked = fmt.always_check
    block_size = fmt.block_size
    done = 0
    try:
        while True:
            tracker.reported = 0
            types = {n: pa.binary() for n in names} if checked else typed
            batches = _arrow_csv_batches(
                path, names, types, tracker.on_invalid_row, done, block_size
            )
            try:
                for batch, last in _with_last(batches):
                    n = batch.num_rows
                    heights = _row_heights(batch, names if checked else text_columns)
                    lines, rejected = tracker.place(heights, n)
                    if last:
                        height = 1 if heights is None or not n else int(heights[-1])
                        row = (int(lines[-1]), height) if n else None
                        extra, drop = _parser_items(
                            path, len(names), rejected + tracker.leftover(), row, True
                        )
                        if drop:
                            batch, lines = batch.slice(0, n - 1), lines[:-1]
                    else:
                        extra, _ = _parser_items(path, len(names), rejected)
                    arrays, failures = {}, {}
                    for name in used:
                        arr = batch.column(name)
                        if checked:
                            arr, fail = _parse_text(arr, layout.kinds[name])
                            if fail is not None:
                                failures[name] = fail
                        arrays[name] = arr
                    raw = {n: batch.column(n) for n in used} if checked else None
                    block = _Block(arrays, failures, raw, lines, _blank_rows(batch))
                    yield from _settle_block(path, block, layout, opts, unit="line", extra=extra)
                    done += n
            except pa.ArrowInvalid as exc:
                if fmt.row_too_long(exc, block_size):
                    block_size *= 4
                    continue
                if checked:
                    raise _parser_failure(path, len(names), tracker.next_line, exc) from None
                # A value the typed reader could not convert: go on from the same row on
                # the checked path, which pins it to its line.
                checked = True
                continue
            except OSError as exc:
                raise _fail(
                    path, tracker.next_line, None, f"cannot read the file: {exc}"
                ) from None
            finally:
                batches.close()
            break
        # Rows pyarrow rejected in a file that delivered none.
        items, _ = _parser_items(path, len(names), tracker.leftover(), None, True)
        if items:
            empty = np.zeros(0, dtype=np.int64)
            yield from _settle(path, None, empty, empty.astype(bool), items, opts, "line")
    finally:
        tracker.close()


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
    max_abs: float = FLOAT32_MAX,
) -> Iterator[StreamChunk]:
    """Read labelled rows from CSV files in chunks, with memory bounded by the chunk.

    Parameters
    ----------
    paths : str, path-like or list of them
        One file, a list of files, or glob patterns (their matches are read in sorted
        order; a pattern that matches nothing is an error). Files ending in ``.gz``
        (or another suffix pyarrow knows, such as ``.bz2``) are decompressed on the fly.
    target : str, list of str or None
        Name of the label column; None for a stream without labels (for prediction),
        whose chunks have ``y=None``; a list of two or more names for several targets,
        a column of ``y`` each (see Notes).
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
        Let missing features through as NaN. A missing target is always a bad row (of
        several targets, a row missing every one).
    as_frame : bool, default=False
        Yield ``X`` as a pandas DataFrame, where text feature columns stay text (for
        pipelines that encode them). With False, every feature must be numeric.
    report : BadRowReport, default=None
        Where dropped rows are recorded; a new one when None. Either way it is the
        ``report`` attribute of the returned iterator.
    max_abs : float, default=3.4028234663852886e+38
        The largest magnitude a feature value may have: a larger one is a bad value,
        like a missing one. The default is float32's largest value, since skocl's
        networks compute in float32 by default and a larger value becomes ``inf``
        there. For a model with ``dtype="float64"``, pass
        ``numpy.finfo(numpy.float64).max`` to let every finite value through.
        ``inf`` and ``-inf`` are bad values whatever the bound.

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
    column's type, a missing target (of several, a row missing all), a missing feature
    unless ``allow_nan``, an infinite value (``inf``, ``-inf``, ``1e400``) in a
    feature or a float target, a feature beyond ``max_abs`` (``1e39``, ``1e300`` by
    default), and a quote that is never closed (the row then runs to the end of the
    file; the error and the report give the lines it took, from-to). Empty fields and
    pyarrow's null markers (``NA``, ``NaN``, ``null``...) are missing. A row whose
    every field is empty (a blank line) holds nothing and is passed over, as pandas
    and pyarrow do, without counting as bad. Every later file must have the
    same header as the first; a column missing, moved or added is an error.

    Several targets (``target`` a list; a list of one name is refused: pass the name
    as a string) each take their type as the single target does. ``y`` then has shape
    (n_rows, n_targets): float64 with NaN for a missing label when every target is
    float, otherwise object, each label a Python value of its column's type (int,
    float, bool, str) and None for a missing one, so that no label changes type. A
    missing value in a target column is a missing label of that task, not a bad row;
    a row where every target is missing is one ("no target value", charged to no
    column).

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
    opts = _Options.checked(
        target, chunksize, features, on_bad_rows, allow_nan, as_frame, report, max_abs
    )
    return _open_files(_CSV, paths, opts)
