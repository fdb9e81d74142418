"""Several targets: ``target`` as a list gives ``y`` a column per target, a missing label
is no fault, a row with no label is a bad one; the same in CSV, Parquet and DataFrames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _readers_util import check_error, parse_in_small_blocks, write_text

from skocl import OnlineFineTuneClassifier
from skocl._readers import StreamError, _csv, iter_chunks, open_stream, read_csv

# Line 5 (the 4th row) has no label at all; the others miss at most one.
TEXT = "x,a,z,b\n1.5,0,2,red\n2.5,,3,blue\n3.5,1,4,\n4.5,,5,\n5.5,2,6,red\n6.5,1,7,blue\n"
# The labels of the rows that are kept, in an object array: int, str, None.
LABELS = [[0, "red"], [None, "blue"], [1, None], [2, "red"], [1, "blue"]]


def _read_all(stream) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(stream)
    return np.vstack([c.X for c in chunks]), np.concatenate([c.y for c in chunks])


def _typed(rows) -> list[list]:
    """The labels with their Python types, to compare them exactly."""
    return [[(type(v).__name__, v) for v in row] for row in np.asarray(rows).tolist()]


@pytest.fixture
def path(tmp_path):
    return write_text(tmp_path / "tasks.csv", TEXT)


def test_a_csv_with_two_targets_gives_a_label_column_per_target(path):
    stream = open_stream(path, target=["a", "b"], chunksize=2, on_bad_rows="skip")
    chunks = list(stream)
    assert [c.y.shape for c in chunks] == [(2, 2), (2, 2), (1, 2)]
    assert all(c.y.dtype == object for c in chunks)
    assert stream.features == ["x", "z"]
    X, Y = np.vstack([c.X for c in chunks]), np.concatenate([c.y for c in chunks])
    np.testing.assert_array_equal(X, [[1.5, 2], [2.5, 3], [3.5, 4], [5.5, 6], [6.5, 7]])
    # Labels keep their column's type (int stays int), None marks a missing one.
    assert _typed(Y) == _typed(LABELS)
    assert [c.rows.tolist() for c in chunks] == [[2, 3], [4, 6], [7]]
    assert stream.report.count == 1
    ((source, line, column, reason),) = stream.report.rows
    assert (source, line, column) == (path, 5, None)
    assert reason == "no target value: every target column ('a', 'b') is missing"


def test_a_row_with_no_label_stops_the_stream_by_default(path):
    stream = open_stream(path, target=["a", "b"], chunksize=2)
    assert len(next(stream).y) == 2  # the chunk before the bad row comes first
    with pytest.raises(StreamError, match="every target column \\('a', 'b'\\)") as info:
        next(stream)
    check_error(info.value, path, 5, None)


def test_one_target_in_a_list_of_several_keeps_its_rules(path, tmp_path):
    """A missing value is still a bad row for a single (str) target; with several, a
    value that does not read as its target's type (an int, fixed by the first chunk)
    is a bad row of that column."""
    stream = read_csv(path, target="a", features=["x", "z"], on_bad_rows="skip")
    _, y = _read_all(stream)
    assert y.tolist() == [0, 1, 2, 1] and y.dtype == np.int64
    assert [(line, column) for _, line, column, _ in stream.report.rows] == [(3, "a"), (5, "a")]
    bad = write_text(tmp_path / "bad.csv", TEXT + "7.5,x,8,red\n")
    stream = read_csv(bad, target=["a", "b"], chunksize=2, on_bad_rows="skip")
    _, Y = _read_all(stream)
    assert len(Y) == 5
    assert [(line, column) for _, line, column, _ in stream.report.rows] == [(5, None), (8, "a")]
    assert "cannot read 'x' as an integer" in stream.report.rows[1][3]


def test_float_targets_give_float64_with_nan(tmp_path):
    text = "x,p,q\n1,0.5,1.5\n2,,2.5\n3,1.5,\n4,,\n"
    path = write_text(tmp_path / "floats.csv", text)
    stream = read_csv(path, target=["p", "q"], on_bad_rows="skip")
    _, Y = _read_all(stream)
    assert Y.dtype == np.float64
    np.testing.assert_array_equal(Y, [[0.5, 1.5], [np.nan, 2.5], [1.5, np.nan]])
    assert [line for _, line, _, _ in stream.report.rows] == [5]
    # Labels are only required to be finite, each in its own column.
    inf = write_text(tmp_path / "inf.csv", "x,p,q\n1,inf,1.5\n2,0.5,2.5\n")
    stream = read_csv(inf, target=["p", "q"], on_bad_rows="skip")
    _, Y = _read_all(stream)
    np.testing.assert_array_equal(Y, [[0.5, 2.5]])
    assert [(line, column) for _, line, column, _ in stream.report.rows] == [(2, "p")]


def test_typed_and_checked_paths_agree_on_several_targets(path, monkeypatch):
    def read():
        stream = read_csv(path, target=["b", "a"], chunksize=3, on_bad_rows="skip")
        X, Y = _read_all(stream)
        return X.tolist(), _typed(Y), stream.report.rows

    typed = read()
    monkeypatch.setattr(_csv, "_CSV", _csv._CsvFormat(always_check=True))
    assert read() == typed
    parse_in_small_blocks(monkeypatch, block_size=16)
    assert read() == typed
    assert typed[1] == _typed(np.array(LABELS, dtype=object)[:, ::-1])


def test_parquet_and_dataframes_read_as_the_csv_does(path, tmp_path):
    frame = pd.read_csv(path, dtype={"a": "Int64"})
    kept = frame.drop(index=3).astype({"b": object})  # labels the reader must not touch
    parquet = str(tmp_path / "tasks.parquet")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)

    stream = open_stream(parquet, target=["a", "b"], chunksize=2, on_bad_rows="skip")
    X, Y = _read_all(stream)
    np.testing.assert_array_equal(X, kept[["x", "z"]].to_numpy())
    assert _typed(Y) == _typed(LABELS)
    assert [(line, column) for _, line, column, _ in stream.report.rows] == [(4, None)]

    X, Y = _read_all(open_stream(kept, target=["a", "b"], chunksize=2))
    np.testing.assert_array_equal(X, kept[["x", "z"]].to_numpy())
    assert _typed(Y) == _typed(LABELS)
    assert kept["b"].map(type).tolist() == [str, str, float, str, str]  # NaN left as it was
    # A DataFrame has no skipping: a row with no label is an error naming it.
    stream = iter_chunks(frame, target=["a", "b"], chunksize=2)
    next(stream)
    with pytest.raises(StreamError, match="row 3 \\(0-based\\): every target column") as info:
        next(stream)
    assert info.value.source == "<DataFrame>" and info.value.column is None
    # Float columns give float64 with NaN, as in files.
    floats = pd.DataFrame({"x": [1.0, 2.0], "p": [0.5, np.nan], "q": [np.nan, 1.0]})
    chunk = next(iter_chunks(floats, target=["p", "q"]))
    assert chunk.y.dtype == np.float64 and chunk.X.tolist() == [[1.0], [2.0]]
    np.testing.assert_array_equal(chunk.y, [[0.5, np.nan], [np.nan, 1.0]])


def test_the_chunks_teach_a_model_one_task_per_target(path):
    clf = OnlineFineTuneClassifier(random_state=0, hidden_layer_sizes=(8,))
    for chunk in open_stream(path, target=["a", "b"], chunksize=2, on_bad_rows="skip"):
        clf.partial_fit(chunk.X, chunk.y)
    assert clf.n_outputs_ == 2
    assert clf.classes_[0].tolist() == [0, 1, 2]
    assert clf.classes_[1].tolist() == ["blue", "red"]


@pytest.mark.parametrize(
    "target, error, message",
    [
        (["a"], ValueError, "pass it as a string, target='a'"),
        ([], ValueError, "names no column"),
        (["a", "b", "a"], ValueError, "target names 'a' twice"),
    ],
)
def test_a_bad_list_of_targets_is_refused_at_the_call(path, target, error, message):
    with pytest.raises(error, match=message):
        open_stream(path, target=target)
    with pytest.raises(error, match=message):
        iter_chunks(pd.read_csv(path), target=target)


def test_a_target_missing_from_the_file_or_also_a_feature(path):
    with pytest.raises(ValueError, match="the target 'b' cannot also be a feature"):
        read_csv(path, target=["a", "b"], features=["x", "b"])
    with pytest.raises(StreamError, match="no such column \\(a target\\)") as info:
        next(read_csv(path, target=["a", "c"]))
    check_error(info.value, path, 1, "c")
    with pytest.raises(StreamError, match="no such column \\(a target\\)") as info:
        next(iter_chunks(pd.read_csv(path), target=["a", "c"]))
    assert info.value.column == "c"


def test_arrays_with_a_label_column_per_target():

    X = np.arange(14.0).reshape(7, 2)
    Y = np.array([[0, 1], [1, np.nan], [np.nan, 0], [1, 1], [0, 0], [1, 1], [0, 1]])
    chunks = list(open_stream((X, Y), target=None, chunksize=3))
    assert [c.y.shape for c in chunks] == [(3, 2), (3, 2), (1, 2)]
    np.testing.assert_array_equal(np.vstack([c.y for c in chunks]), Y)
    Y[4] = np.nan  # a row without any label is an error naming it
    with pytest.raises(StreamError, match=r"no target value in row 4"):
        list(open_stream((X, Y), target=None, chunksize=3))
    objects = np.array([["a", None], [None, None]], dtype=object)
    with pytest.raises(StreamError, match=r"no target value in row 1"):
        list(open_stream((X[:2], objects), target=None))
