"""Helpers shared by the reader tests."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from skocl._readers import StreamChunk, StreamError, _csv


def write_csv(path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def write_text(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def concat(chunks: list[StreamChunk]) -> tuple[np.ndarray, np.ndarray]:
    return np.vstack([c.X for c in chunks]), np.concatenate([c.y for c in chunks])


def check_error(exc: StreamError, path: str, line: int | None, column: str | None) -> None:
    """The error names the file, the line and the column, in its message and fields."""
    message = str(exc)
    assert os.path.basename(path) in message
    assert exc.source == path
    assert exc.line == line
    assert exc.column == column
    if line is not None:
        assert f"line {line}," in message or f"line {line}:" in message
    if column is not None:
        assert repr(column) in message


def parse_in_small_blocks(monkeypatch, block_size: int = 4096) -> None:
    """Make pyarrow parse 4 KiB at a time, so that small files span many blocks."""
    monkeypatch.setattr(_csv, "_CSV", _csv._CsvFormat(block_size=block_size))


GOOD = "a,b,y\n" + "".join(f"{i},{i}.5,{i % 2}\n" for i in range(40))


def with_row(line: int, row: str, text: str = GOOD) -> str:
    """``text`` with physical line ``line`` replaced by ``row``."""
    lines = text.splitlines(keepends=True)
    lines[line - 1] = row + "\n"
    return "".join(lines)
