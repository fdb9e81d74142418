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
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from ._types import _arrow

if TYPE_CHECKING:
    import pyarrow as pa


def _open_text(path: str) -> io.TextIOWrapper:
    pa = _arrow()[0]
    # utf-8-sig: pyarrow drops a byte order mark, so the header must match without it.
    return io.TextIOWrapper(
        pa.input_stream(path, compression="detect"),
        encoding="utf-8-sig",
        errors="replace",
        newline="",
    )


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
