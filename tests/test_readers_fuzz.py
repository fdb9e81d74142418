"""Seeded fuzz tests of the file readers (issue 13, "Keeping it fixed").

Random mutations of a valid CSV file (plain and gzipped) and of a valid Parquet file:
byte flips, truncations, deletions, inserted delimiters, quotes, newlines, bytes that
are not UTF-8 and values beyond float32. Whatever the file holds, iterating a reader
gives correct chunks or a StreamError that names the file; never another exception,
and memory stays bounded. "Correct" is checked against the file itself: every row a
reader delivers from a line that is still one of the original lines holds exactly that
line's values.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import tracemalloc
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skocl._readers import StreamError, read_csv, read_parquet
from skocl._readers._types import FLOAT32_MAX

# pyarrow decodes a rejected row's text as UTF-8 before calling the reader's handler;
# a rejected row with a byte that is not UTF-8 makes that decoding fail inside pyarrow,
# which reports it as an unraisable exception and stops (the reader then names the row).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

N_ROWS = 300
HEADER = "a,b,label"
LABELS = ("cat", "dog", "eel")
ORIGINAL = {f"{i},{i}.25,{LABELS[i % 3]}": i for i in range(N_ROWS)}
CSV_TEXT = HEADER + "\n" + "\n".join(ORIGINAL) + "\n"
INSERTS = [b",", b'"', b"\n", b"\r", b"\r\n", b"\xff", b"\xc3", b"\x00", b'""', b" ", b"inf"]
INSERTS += [b"1e39", b"-1e300", b"NaN", b",,,", b'"\n']

# Python-side and pyarrow-pool peaks for one read of a file of a few KiB.
MAX_TRACED = 16 * 2**20
MAX_ARROW = 64 * 2**20
_POOLS: list[pa.MemoryPool] = []


def mutate(data: bytes, rng: random.Random, inserts: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        op = rng.choice(["flip", "truncate", "insert", "insert", "delete"])
        if op == "flip" and at < len(out):
            out[at] = rng.randrange(256)
        elif op == "truncate":
            del out[at:]
        elif op == "insert":
            out[at:at] = rng.choice(inserts)
        elif op == "delete":
            del out[at : at + rng.randint(1, 30)]
    return bytes(out)


def read_all(reader, path, measure: bool, **kwargs):
    """The chunks and the reader's error (None when it read to the end). With
    ``measure``, the peak memory of the read is checked: Python's (tracemalloc, which
    slows the read several times) and pyarrow's memory pool."""
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    # Arrays in the chunks (labels read zero-copy) free their buffers through the pool
    # that allocated them, so it must outlive them.
    _POOLS.append(pool)
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    if measure:
        tracemalloc.start()
    chunks, error = [], None
    try:
        for chunk in reader(path, **kwargs):
            chunks.append(chunk)
    except StreamError as exc:
        error = exc
    finally:
        if measure:
            traced = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert traced < MAX_TRACED, traced
        pa.set_memory_pool(previous)
    assert pool.max_memory() < MAX_ARROW, pool.max_memory()
    return chunks, error


def check_error_names_the_file(error: StreamError, path: str) -> None:
    message = str(error)
    assert error.source == path and message.startswith(path), message
    if error.line is not None:
        assert re.search(rf"\b(line|row) {error.line}\b", message), message


def check_chunks(chunks, n_features: int) -> np.ndarray:
    """Shapes, types and values every chunk must have; the lines of all rows."""
    for chunk in chunks:
        assert chunk.X.dtype == np.float64 and chunk.X.shape == (len(chunk.y), n_features)
        assert len(chunk.rows) == len(chunk.y) and chunk.first_line == chunk.rows[0]
        assert np.isfinite(chunk.X).all() and (np.abs(chunk.X) <= FLOAT32_MAX).all()
        if chunk.y.dtype.kind == "f":
            assert np.isfinite(chunk.y).all()
        else:
            assert all(label is not None for label in chunk.y)
    rows = np.concatenate([c.rows for c in chunks]) if chunks else np.zeros(0, int)
    assert (np.diff(rows) > 0).all()
    return rows


def read_and_check(reader, path, measure, seen, **kwargs):
    """Read ``path`` in chunks of 64 rows and check what every outcome must satisfy;
    count the outcomes in ``seen``. The chunks, and the lines of their rows."""
    chunks, error = read_all(reader, path, measure, chunksize=64, **kwargs)
    if error is not None:
        seen["error"] += 1
        check_error_names_the_file(error, path)
    if chunks:
        seen["read"] += 1
    return chunks, check_chunks(chunks, 2)


def physical_lines(data: bytes) -> list[bytes]:
    return re.split(rb"\r\n|\r|\n", data)


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("seed", [0, 1])
def test_mutated_csv_gives_correct_chunks_or_a_located_error(tmp_path, seed, packed):
    rng = random.Random(seed)
    original = CSV_TEXT.encode()
    seen = Counter()
    for trial in range(30 if not packed else 20):
        data = mutate(original, rng, INSERTS)
        path = str(tmp_path / (f"m{trial}.csv.gz" if packed else f"m{trial}.csv"))
        if packed:
            stored = gzip.compress(data, mtime=0)
            # Damage the compressed stream itself now and then.
            if trial % 3 == 0:
                stored = mutate(stored, rng, [b"\x00", b"\xff"])
            with open(path, "wb") as f:
                f.write(stored)
        else:
            with open(path, "wb") as f:
                f.write(data)
        lines = physical_lines(data)
        for target, policy in (("label", "raise"), ("label", "skip"), ("a", "skip")):
            chunks, rows = read_and_check(
                read_csv, path, trial % 4 == 0, seen, target=target, on_bad_rows=policy
            )
            if not chunks:
                continue
            if lines[0] != HEADER.encode() or (packed and trial % 3 == 0):
                continue
            X = np.vstack([c.X for c in chunks])
            y = np.concatenate([c.y for c in chunks])
            for k, line in enumerate(rows):
                text = lines[line - 1].decode("utf-8", errors="replace")
                i = ORIGINAL.get(text)
                if i is None:
                    continue
                seen["checked"] += 1
                if target == "label":
                    assert list(X[k]) == [i, i + 0.25] and y[k] == LABELS[i % 3], (trial, line)
                else:
                    assert list(X[k]) == [i + 0.25] and y[k] == i, (trial, line)
    # The mutations hit both outcomes, and many rows were checked value for value.
    assert seen["error"] > 5 and seen["read"] > 5 and seen["checked"] > 1000


def test_mutated_parquet_gives_correct_chunks_or_a_located_error(tmp_path):
    rng = random.Random(7)
    table = pa.table(
        {
            "a": np.arange(N_ROWS, dtype=np.float64),
            "b": pa.array(np.arange(N_ROWS) % 7, pa.int32()),
            "label": pa.array([LABELS[i % 3] for i in range(N_ROWS)]).dictionary_encode(),
        }
    )
    source = tmp_path / "base.parquet"
    pq.write_table(table, source, row_group_size=70, write_page_checksum=True)
    original = source.read_bytes()
    seen = Counter()
    for trial in range(80):
        data = mutate(original, rng, [b"\x00", b"\xff", b"\x7f\xff\xff\xff"])
        path = str(tmp_path / f"m{trial}.parquet")
        with open(path, "wb") as f:
            f.write(data)
        for target, policy in (("label", "raise"), ("a", "skip")):
            chunks, rows = read_and_check(
                read_parquet, path, trial % 4 == 0, seen, target=target, on_bad_rows=policy
            )
            if not chunks:
                continue
            X = np.vstack([c.X for c in chunks])
            y = np.concatenate([c.y for c in chunks])
            # Row r of the file is row r of the table: a damaged page is an error, not
            # other values.
            if target == "label":
                np.testing.assert_array_equal(X, np.column_stack([rows - 1, (rows - 1) % 7]))
                assert list(y) == [LABELS[(r - 1) % 3] for r in rows]
            else:
                np.testing.assert_array_equal(y, rows - 1)
    assert seen["error"] > 5 and seen["read"] > 5
    assert os.path.getsize(source) == len(original)
