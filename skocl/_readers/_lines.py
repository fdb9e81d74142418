"""Physical line numbers of the rows of a CSV file.

Lines are 1-based physical lines of the file, the header being line 1 (or lines 1..k
when a quoted header name holds a newline). pyarrow reports no line numbers, so they
are counted here: blank lines are kept as rows by the parser (and dropped afterwards),
each row counts one line plus the newlines inside its quoted values (counted with
:func:`pyarrow.compute.count_substring` over the text columns), and rows pyarrow
rejects for a wrong number of fields are placed by a second, lazy pass with the
standard :mod:`csv` module that only starts when such a row exists and only reads as far
as needed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from ._types import _arrow

if TYPE_CHECKING:
    import pyarrow as pa


def _open_text(path: str) -> io.TextIOWrapper:
    pa = _arrow()[0]
    # utf-8-sig: pyarrow drops a byte order mark, so the header must match without it.
    # surrogateescape keeps a byte that is not UTF-8 visible (as U+DC80..U+DCFF) for
    # the header check, without failing the whole read at it.
    return io.TextIOWrapper(
        pa.input_stream(path, compression="detect"),
        encoding="utf-8-sig",
        errors="surrogateescape",
        newline="",
    )


def _line_breaks(text: str) -> int:
    """Line breaks in ``text``: ``\\n``, ``\\r\\n`` and a lone ``\\r`` count one each."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _not_utf8(names: list[str]) -> tuple[int, int, int] | None:
    """(field, line within the header, byte) of the first byte that is not UTF-8."""
    breaks = 0
    for field, name in enumerate(names, 1):
        for at, char in enumerate(name):
            if "\udc80" <= char <= "\udcff":
                return field, 1 + breaks + _line_breaks(name[:at]), ord(char) - 0xDC00
        breaks += _line_breaks(name)
    return None


_MAX_FIELD = (1 << 31) - 1

# Characters that can change the state of a CSV record.
_SPECIAL = re.compile(r'[",\r\n]')


def _unclosed_quote(path: str, start: int) -> int | None:
    """The last line of the file when the record on line ``start`` never closes a quote.

    None when the record ends. It follows pyarrow's rules: a quote opens a quoted
    field only as its first character, ``""`` inside one is a quote, and after the
    closing quote the field goes on to the next delimiter. It reads from line
    ``start`` on, so it is only asked about the last record of a file, which is where
    an unclosed quote ends up: pyarrow reads it and everything after it as one value.
    """
    with _open_text(path) as f:
        for _ in range(start - 1):
            if not f.readline():
                return None
        quoted = False
        closing = -2  # position of a quote inside a quoted field: a close, or half of ""
        field_start = 0
        offset = 0
        breaks = 0
        last = ""
        while piece := f.read(1 << 20):
            # A \r\n split between two pieces is one line break.
            breaks += _line_breaks(piece) - (last == "\r" and piece[0] == "\n")
            last = piece[-1]
            for match in _SPECIAL.finditer(piece):
                char, at = match.group(), offset + match.start()
                if quoted:
                    if char == '"':
                        closing = -2 if at == closing + 1 else at
                        continue
                    if closing < 0:
                        continue  # a delimiter or a newline inside the quotes
                    quoted = False  # the quote at ``closing`` closed the field
                if char == '"':
                    if at == field_start:
                        quoted, closing = True, -2
                elif char == ",":
                    field_start = at + 1
                else:
                    return None
            offset += len(piece)
        if not quoted or closing >= 0:
            return None
        return start + breaks - (last in "\r\n")


def _records(path: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of every record after the header.

    The standard csv module splits records as pyarrow does; it runs only when pyarrow
    has rejected a row, and only as far as the rows being placed.
    """
    # pyarrow reads a value as long as its largest block; so must the csv module here,
    # whose default limit (128 KiB) would stop at a long unclosed quote. The limit is
    # the module's, process-wide: it is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD))
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            next(reader)
            start = reader.line_num + 1
            for record in reader:
                end = reader.line_num
                yield start, end, record
                start = end + 1
        except (csv.Error, StopIteration):
            return


def _malformed_rows(path: str, n_fields: int) -> Iterator[tuple[int, int, int]]:
    """(first line, number of lines, number of fields) of each row with a wrong count."""
    for start, end, record in _records(path):
        # An empty record is a blank line: pyarrow keeps it as a row of nulls.
        if record and len(record) != n_fields:
            yield start, end - start + 1, len(record)


def _unreadable_row(path: str, n_fields: int, line: int) -> tuple[int, int, int] | None:
    """(first line, fields, byte) of the first row from ``line`` on with a wrong number
    of fields and a byte that is not UTF-8: pyarrow cannot hand such a row to its
    invalid-row handler (it decodes the row's text first), so it stops there."""
    for start, end, record in _records(path):
        if end < line or not record or len(record) == n_fields:
            continue
        bad = _not_utf8(record)
        if bad is not None:
            return start + bad[1] - 1, len(record), bad[2]
    return None


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
        """Lines of the next ``n`` rows, and the rejected rows met among them.

        A rejected row is (first line, number of lines, number of fields).
        """
        if heights is None:
            base = self.next_line + np.arange(n, dtype=np.int64)
            end = self.next_line + n
        else:
            base = np.empty(n, dtype=np.int64)
            base[:1] = self.next_line
            np.cumsum(heights[:-1], out=base[1:])
            base[1:] += self.next_line
            end = self.next_line + int(heights.sum())
        rejected: list[tuple[int, int, int]] = []
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
            rejected.append(span)
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

    def leftover(self) -> list[tuple[int | None, int | None, int | None]]:
        """Rejected rows after the last delivered row (at the end of the file)."""
        rest: list[tuple[int | None, int | None, int | None]] = []
        while self.reported > self.located:
            span = self._peek()
            self.located += 1
            self._peeked = None
            rest.append((None, None, None) if span is None else span)
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
