"""Tests of the chunked readers in skocl/_readers/."""

from __future__ import annotations

import gzip
import os
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from _readers_util import (
    GOOD,
    check_error,
    concat,
    parse_in_small_blocks,
    with_row,
    write_csv,
    write_text,
)

from skocl._readers import (
    BadRowReport,
    StreamError,
    _csv,
    iter_chunks,
    open_stream,
    read_csv,
    read_parquet,
)

FEATURES = ["f0", "f1", "f2", "f3"]


@pytest.fixture
def small_blocks(monkeypatch):
    """Make pyarrow parse 4 KiB at a time, so that small files span many blocks."""
    parse_in_small_blocks(monkeypatch)


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: np.round(rng.standard_normal(n), 4) for name in FEATURES})
    frame["y"] = rng.integers(0, 3, n)
    return frame


# --------------------------------------------------------------------- plain reading


def test_chunks_have_exact_sizes_and_the_contents_of_pandas(tmp_path):
    path = write_csv(tmp_path / "data.csv", make_frame(2500))
    chunks = list(read_csv(path, target="y", chunksize=1000))
    assert [len(c.X) for c in chunks] == [1000, 1000, 500]
    assert [c.index for c in chunks] == [0, 1, 2]
    assert [c.first_line for c in chunks] == [2, 1002, 2002]
    assert all(c.source == path for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.rows for c in chunks]), np.arange(2, 2502))
    expected = pd.read_csv(path)
    X, y = concat(chunks)
    assert X.dtype == np.float64 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, expected[FEATURES].to_numpy())
    np.testing.assert_array_equal(y, expected["y"].to_numpy())
    assert y.dtype == np.int64


def test_many_parser_blocks_give_the_same_chunks(tmp_path, small_blocks):
    path = write_csv(tmp_path / "data.csv", make_frame(3000))
    chunks = list(read_csv(path, target="y", chunksize=700))
    assert [len(c.X) for c in chunks] == [700] * 4 + [200]
    X, y = concat(chunks)
    expected = pd.read_csv(path)
    np.testing.assert_array_equal(X, expected[FEATURES].to_numpy())
    np.testing.assert_array_equal(y, expected["y"].to_numpy())
    assert [c.first_line for c in chunks] == [2, 702, 1402, 2102, 2802]


def test_gzip_equals_plain(tmp_path):
    frame = make_frame(1200)
    plain = write_csv(tmp_path / "data.csv", frame)
    packed = str(tmp_path / "data.csv.gz")
    with open(plain, "rb") as src, gzip.open(packed, "wb") as dst:
        dst.write(src.read())
    a = list(read_csv(plain, target="y", chunksize=500))
    b = list(read_csv(packed, target="y", chunksize=500))
    assert len(a) == len(b) == 3
    for ca, cb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ca.X, cb.X)
        np.testing.assert_array_equal(ca.y, cb.y)
        np.testing.assert_array_equal(ca.rows, cb.rows)
    assert b[0].source == packed


def test_glob_is_sorted_a_list_keeps_its_order_and_chunks_stay_in_their_file(tmp_path):
    frames = {
        name: make_frame(n, seed)
        for name, n, seed in [("b.csv", 250, 1), ("a.csv", 130, 2), ("c.csv", 70, 3)]
    }
    for name, frame in frames.items():
        write_csv(tmp_path / name, frame)
    chunks = list(read_csv(str(tmp_path / "*.csv"), target="y", chunksize=100))
    assert [(os.path.basename(c.source), len(c.X)) for c in chunks] == [
        ("a.csv", 100),
        ("a.csv", 30),
        ("b.csv", 100),
        ("b.csv", 100),
        ("b.csv", 50),
        ("c.csv", 70),
    ]
    assert [c.index for c in chunks] == list(range(6))
    X, _ = concat(chunks)
    expected = pd.concat([frames["a.csv"], frames["b.csv"], frames["c.csv"]])
    np.testing.assert_array_equal(X, expected[FEATURES].to_numpy())

    listed = list(read_csv([tmp_path / "c.csv", tmp_path / "a.csv"], target="y", chunksize=100))
    assert [os.path.basename(c.source) for c in listed] == ["c.csv", "a.csv", "a.csv"]
    assert [c.first_line for c in listed] == [2, 2, 102]


def test_empty_glob_is_an_error_naming_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.csv")
    stream = read_csv(pattern, target="y")
    with pytest.raises(StreamError, match="matches no file") as info:
        next(stream)
    assert pattern in str(info.value)


def test_parquet_equals_csv(tmp_path):
    frame = make_frame(2300)
    csv_path = write_csv(tmp_path / "data.csv", frame)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "data.parquet", row_group_size=800)
    from_csv = list(read_csv(csv_path, target="y", chunksize=1000))
    from_parquet = list(read_parquet(tmp_path / "data.parquet", target="y", chunksize=1000))
    assert [len(c.X) for c in from_parquet] == [1000, 1000, 300]
    for a, b in zip(from_csv, from_parquet, strict=True):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
        assert a.y.dtype == b.y.dtype
    # Parquet has no lines: rows are numbered from 1.
    assert [c.first_line for c in from_parquet] == [1, 1001, 2001]


def test_features_are_selected_in_the_given_order(tmp_path):
    frame = make_frame(300)
    path = write_csv(tmp_path / "data.csv", frame)
    for reader, source in [(read_csv, path), (read_parquet, tmp_path / "d.parquet")]:
        if reader is read_parquet:
            pq.write_table(pa.Table.from_pandas(frame), source)
        X, _ = concat(list(reader(source, target="y", features=["f3", "f0"], chunksize=128)))
        np.testing.assert_array_equal(X, frame[["f3", "f0"]].to_numpy())


def test_no_target_gives_no_labels(tmp_path):
    frame = make_frame(50).drop(columns="y")
    path = write_csv(tmp_path / "data.csv", frame)
    chunks = list(read_csv(path, target=None, chunksize=20))
    assert all(c.y is None for c in chunks)
    np.testing.assert_array_equal(np.vstack([c.X for c in chunks]), frame.to_numpy())


def test_string_and_bool_labels_keep_their_type(tmp_path):
    text = "a,label,flag\n" + "".join(
        f"{i},{'cat' if i % 3 else 'dog'},{'true' if i % 2 else 'false'}\n" for i in range(30)
    )
    path = write_text(tmp_path / "data.csv", text)
    y = np.concatenate([c.y for c in read_csv(path, target="label", features=["a"], chunksize=7)])
    assert y.dtype == object and set(y) == {"cat", "dog"}
    assert list(y) == list(pd.read_csv(path)["label"])
    flags = np.concatenate([c.y for c in read_csv(path, target="flag", features=["a"])])
    assert flags.dtype == bool
    assert list(flags) == [bool(i % 2) for i in range(30)]


def test_as_frame_passes_text_features_through(tmp_path):
    text = "colour,size,y\n" + "".join(
        f"{['red', 'blue'][i % 2]},{i},{i % 2}\n" for i in range(25)
    )
    path = write_text(tmp_path / "data.csv", text)
    chunks = list(read_csv(path, target="y", chunksize=10, as_frame=True))
    assert [len(c.X) for c in chunks] == [10, 10, 5]
    frame = pd.concat([c.X for c in chunks])
    assert list(frame.columns) == ["colour", "size"]
    assert list(frame["colour"]) == list(pd.read_csv(path)["colour"])
    assert frame["size"].dtype == np.float64
    assert list(frame.index) == list(range(25))


def test_a_text_feature_column_needs_as_frame(tmp_path):
    text = "colour,size,y\n" + "".join(f"red,{i},0\n" for i in range(5))
    path = write_text(tmp_path / "data.csv", text)
    for policy in ("raise", "skip"):
        with pytest.raises(StreamError, match="as_frame=True") as info:
            list(read_csv(path, target="y", on_bad_rows=policy))
        check_error(info.value, path, 2, "colour")


def test_header_only_file_yields_nothing_and_an_empty_file_is_an_error(tmp_path):
    path = write_text(tmp_path / "a_head.csv", "a,y\n\n")
    assert list(read_csv(path, target="y")) == []
    # Types then come from the first file with rows.
    write_text(tmp_path / "b_data.csv", "a,y\n1,yes\n2,no\n")
    chunks = list(read_csv(str(tmp_path / "*.csv"), target="y"))
    assert len(chunks) == 1 and list(chunks[0].y) == ["yes", "no"]
    assert list(chunks[0].rows) == [2, 3]
    empty = write_text(tmp_path / "empty.csv", "")
    with pytest.raises(StreamError, match="empty") as info:
        list(read_csv(empty, target="y"))
    assert info.value.source == empty
    missing = write_text(tmp_path / "nolabel.csv", "a,y\n1,\n2,\n")
    with pytest.raises(StreamError, match="no target value") as info:
        list(read_csv(missing, target="y", on_bad_rows="skip"))
    assert info.value.column == "y"


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "row, column, reason",
    [
        ("7,8,1,9", None, "expected 3 fields, saw 4"),
        ("7,8", None, "expected 3 fields, saw 2"),
        ("7,abc,1", "b", "cannot read 'abc' as a number"),
        ("7,,1", "b", "missing value"),
        ("7,NaN,1", "b", "missing value"),
        ("7,8,", "y", "missing target value"),
    ],
)
@pytest.mark.parametrize("line", [5, 33])
def test_bad_row_is_named_by_file_line_and_column(
    tmp_path, small_blocks, row, column, reason, line
):
    path = write_text(tmp_path / "bad.csv", with_row(line, row))
    with pytest.raises(StreamError) as info:
        list(read_csv(path, target="y", chunksize=10))
    check_error(info.value, path, line, column)
    assert reason in str(info.value)


def test_label_of_another_type_after_the_first_chunk(tmp_path, small_blocks):
    path = write_text(tmp_path / "bad.csv", with_row(33, "7,8,x"))
    with pytest.raises(StreamError, match="cannot read 'x' as an integer") as info:
        list(read_csv(path, target="y", chunksize=10))
    check_error(info.value, path, 33, "y")
    # Within the first chunk, the label type is inferred to hold it: text.
    path = write_text(tmp_path / "early.csv", with_row(5, "7,8,x"))
    y = np.concatenate([c.y for c in read_csv(path, target="y", chunksize=10)])
    assert y.dtype == object and y[3] == "x" and y[0] == "0"


def test_missing_target_or_feature_column_is_raised_on_first_next(tmp_path):
    path = write_text(tmp_path / "data.csv", GOOD)
    stream = read_csv(path, target="label")  # nothing is read yet
    with pytest.raises(StreamError, match="no such column") as info:
        next(stream)
    check_error(info.value, path, 1, "label")
    with pytest.raises(StreamError) as info:
        next(read_csv(path, target="y", features=["a", "z"]))
    check_error(info.value, path, 1, "z")


def test_nan_target_is_an_error_even_with_allow_nan(tmp_path):
    path = write_text(tmp_path / "data.csv", with_row(12, "1,NA,NA"))
    with pytest.raises(StreamError, match="missing target") as info:
        list(read_csv(path, target="y", allow_nan=True))
    check_error(info.value, path, 12, "y")


def test_allow_nan_lets_missing_features_through(tmp_path):
    path = write_text(tmp_path / "data.csv", with_row(12, "1,,0"))
    X, _ = concat(list(read_csv(path, target="y", allow_nan=True)))
    assert np.isnan(X[10, 1]) and np.isnan(X).sum() == 1


def test_raise_yields_every_full_chunk_before_the_bad_row(tmp_path, small_blocks):
    frame = make_frame(3000)
    frame.to_csv(tmp_path / "data.csv", index=False)
    text = (tmp_path / "data.csv").read_text()
    # Data row 2345 (0-based) is on line 2347.
    path = write_text(tmp_path / "data.csv", with_row(2347, "1,2,3,oops,1", text))
    seen = []
    with pytest.raises(StreamError) as info:
        for chunk in read_csv(path, target="y", chunksize=1000):
            seen.append(chunk)
    check_error(info.value, path, 2347, "f3")
    assert [len(c.X) for c in seen] == [1000, 1000]
    np.testing.assert_array_equal(
        np.vstack([c.X for c in seen]), frame[FEATURES].to_numpy()[:2000]
    )


def test_skip_drops_exactly_the_bad_rows_and_reports_them(tmp_path, small_blocks):
    text = GOOD
    bad = {
        4: ("1,2,3,4", None, "expected 3 fields, saw 4"),
        9: ("9,zz,1", "b", "cannot read 'zz' as a number"),
        15: ("15,15.5,", "y", "missing target value"),
        22: ("22,,0", "b", "missing value"),
        30: ("30", None, "expected 3 fields, saw 1"),
        41: ("x,1,1", "a", "cannot read 'x' as a number"),
    }
    for line, (row, _, _) in bad.items():
        text = with_row(line, row, text)
    path = write_text(tmp_path / "bad.csv", text)
    stream = read_csv(path, target="y", chunksize=8, on_bad_rows="skip")
    chunks = list(stream)
    good_lines = [line for line in range(2, 42) if line not in bad]
    assert sum(len(c.X) for c in chunks) == len(good_lines)
    np.testing.assert_array_equal(np.concatenate([c.rows for c in chunks]), good_lines)
    X, y = concat(chunks)
    expected = np.array([[line - 2, line - 2 + 0.5] for line in good_lines])
    np.testing.assert_array_equal(X, expected)
    np.testing.assert_array_equal(y, [(line - 2) % 2 for line in good_lines])
    assert stream.report.count == len(bad)
    reported = stream.report.rows
    assert [(source, line, column) for source, line, column, _ in reported] == [
        (path, line, column) for line, (_, column, _) in sorted(bad.items())
    ]
    for (*_, got), (_, (_, _, want)) in zip(reported, sorted(bad.items()), strict=True):
        assert want in got


def test_skip_fills_the_report_passed_in_and_caps_the_kept_rows(tmp_path):
    text = "a,y\n" + "".join(f"{i},{'' if i % 2 else 1}\n" for i in range(2400))
    path = write_text(tmp_path / "data.csv", text)
    report = BadRowReport()
    stream = read_csv(path, target="y", on_bad_rows="skip", report=report)
    assert stream.report is report
    X, y = concat(list(stream))
    np.testing.assert_array_equal(X.ravel(), np.arange(0, 2400, 2))
    assert report.count == 1200
    assert len(report.rows) == 1000
    assert [row[1] for row in report.rows[:3]] == [3, 5, 7]


def test_blank_lines_and_quoted_newlines_keep_line_numbers_exact(tmp_path, small_blocks):
    rows = ["a,b,y"]
    for i in range(300):
        label = '"two\nlines"' if i % 50 == 7 else "one"
        rows.append(f"{i},{i},{label}")
        if i % 40 == 3:
            rows.append("")
    rows.append("")
    text = "\n".join(rows)
    physical = text.split("\n")
    target_line = next(k for k, line in enumerate(physical, 1) if line.startswith("250,"))
    physical[target_line - 1] = "250,x,one"
    path = write_text(tmp_path / "data.csv", "\n".join(physical))
    stream = read_csv(path, target="y", chunksize=64, on_bad_rows="skip")
    chunks = list(stream)
    assert stream.report.count == 1
    assert stream.report.rows[0][1:3] == (target_line, "b")
    lines = np.concatenate([c.rows for c in chunks])
    X, y = concat(chunks)
    # Every kept row sits on the line where its first field is.
    for row_line, value in zip(lines, X[:, 0], strict=True):
        assert physical[row_line - 1].startswith(f"{int(value)},")
    assert list(y).count("two\nlines") == 6
    assert len(X) == 299


def test_malformed_rows_among_quoted_newlines(tmp_path):
    text = 'a,y\n1,"x\ny"\n2,a,b\n3,z\n4,"p\nq\nr"\n5,1,2\n6,w\n'
    path = write_text(tmp_path / "data.csv", text)
    stream = read_csv(path, target="y", on_bad_rows="skip")
    chunks = list(stream)
    assert [line for _, line, _, _ in stream.report.rows] == [4, 9]
    assert list(chunks[0].rows) == [2, 5, 6, 10]
    assert list(chunks[0].y) == ["x\ny", "z", "p\nq\nr", "w"]
    with pytest.raises(StreamError) as info:
        list(read_csv(path, target="y"))
    check_error(info.value, path, 4, None)


def test_malformed_last_row_is_reported(tmp_path):
    path = write_text(tmp_path / "data.csv", GOOD + "1,2\n")
    stream = read_csv(path, target="y", on_bad_rows="skip")
    assert sum(len(c.X) for c in stream) == 40
    assert stream.report.rows == [(path, 42, None, "expected 3 fields, saw 2")]


def test_types_are_fixed_by_the_first_chunk(tmp_path, small_blocks):
    rows = "".join(f"{i},{i},{i % 2}\n" for i in range(200))
    # an int feature column later holding 2.5 is read as the float it is
    path = write_text(tmp_path / "ok.csv", "a,b,y\n" + rows + "7,2.5,1\n")
    X, y = concat(list(read_csv(path, target="y", chunksize=50)))
    assert X[-1, 1] == 2.5 and y.dtype == np.int64
    # a float column later holding text is an error, not a switch to text
    path = write_text(tmp_path / "text.csv", "a,b,y\n" + rows + "7,abc,1\n")
    with pytest.raises(StreamError, match="'abc'") as info:
        list(read_csv(path, target="y", chunksize=50, as_frame=True))
    check_error(info.value, path, 202, "b")
    # an int target later holding 2.5 is an error: labels keep their type
    path = write_text(tmp_path / "label.csv", "a,b,y\n" + rows + "7,1,2.5\n")
    with pytest.raises(StreamError, match="as an integer") as info:
        list(read_csv(path, target="y", chunksize=50))
    check_error(info.value, path, 202, "y")


def test_typed_and_checked_paths_agree(tmp_path, monkeypatch):
    text = (
        "a,b,flag,label,n\n"
        " 1 ,2,true,x, 7 \n"
        '1e3,-inf,False,"y z",0x1F\n'
        '"7",nan,1, pad ,-0\n'
        '.5,Infinity,0,"q",007\n'
        '-0,5.,TRUE,w,"12"\n'
    )
    path = write_text(tmp_path / "edge.csv", text)

    def read(target, features):
        # -inf and Infinity are bad values (not finite): both paths must skip them.
        stream = read_csv(
            path, target=target, features=features, allow_nan=True, on_bad_rows="skip"
        )
        chunks = list(stream)
        return chunks[0].X, chunks[0].y, stream.report.rows

    for target, features in [("flag", ["a", "b"]), ("label", ["b"]), ("n", ["a"])]:
        X, y, dropped = read(target, features)
        monkeypatch.setattr(_csv, "_CSV", _csv._CsvFormat(always_check=True))
        X_checked, y_checked, dropped_checked = read(target, features)
        monkeypatch.undo()
        np.testing.assert_array_equal(X, X_checked)
        np.testing.assert_array_equal(y, y_checked)
        assert y.dtype == y_checked.dtype
        assert dropped == dropped_checked
        assert [line for _, line, _, _ in dropped] == ([3, 5] if "b" in features else [])


def test_a_moved_missing_or_new_column_in_a_later_file(tmp_path):
    first = write_text(tmp_path / "a.csv", "x,z,y\n1,2,0\n")
    cases = {
        "moved": ("z,x,y\n2,1,0\n", "x", "moved from field 1 (in a.csv) to field 2"),
        "missing": ("x,y\n1,0\n", "z", "missing (it is field 2 in a.csv)"),
        "new": ("x,z,y,w\n1,2,0,5\n", "w", "unexpected column at field 4"),
    }
    for name, (text, column, reason) in cases.items():
        second = write_text(tmp_path / f"b_{name}.csv", text)
        stream = read_csv([first, second], target="y")
        assert len(next(stream).X) == 1
        with pytest.raises(StreamError) as info:
            next(stream)
        check_error(info.value, second, 1, column)
        assert reason in str(info.value)


def test_parquet_bad_rows_and_type_changes(tmp_path):
    table = pa.table({"a": [1.0, None, 3.0, 4.0], "y": [0, 1, None, 1]})
    path = str(tmp_path / "a.parquet")
    pq.write_table(table, path)
    with pytest.raises(StreamError) as info:
        list(read_parquet(path, target="y"))
    assert "row 2" in str(info.value) and info.value.line == 2
    stream = read_parquet(path, target="y", on_bad_rows="skip")
    X, y = concat(list(stream))
    np.testing.assert_array_equal(X.ravel(), [1.0, 4.0])
    assert [(line, column) for _, line, column, _ in stream.report.rows] == [(2, "a"), (3, "y")]
    other = str(tmp_path / "b.parquet")
    pq.write_table(pa.table({"a": ["p"], "y": [1]}), other)
    stream = read_parquet([path, other], target="y", allow_nan=True, on_bad_rows="skip")
    next(stream)
    with pytest.raises(StreamError, match="holds string") as info:
        next(stream)
    assert info.value.source == other and info.value.column == "a"


# ---------------------------------------------------------------------- memory bound


def test_memory_is_bounded_by_the_chunk_not_the_file(tmp_path, monkeypatch):
    # pyarrow's streaming reader keeps some 40 parser blocks in flight whatever the file
    # size (about 10 MiB with the default 256 KiB blocks); smaller blocks let a file of
    # a few tens of MiB show the bound without a slow test.
    monkeypatch.setattr(_csv, "_CSV", _csv._CsvFormat(block_size=1 << 16))
    rng = np.random.default_rng(0)

    def write(n):
        columns = {f"f{i}": np.round(rng.standard_normal(n), 4) for i in range(8)}
        columns["y"] = rng.integers(0, 3, n)
        path = tmp_path / f"big_{n}.csv"
        pcsv.write_csv(pa.table(columns), path)
        return str(path)

    def peaks(path):
        pool = pa.proxy_memory_pool(pa.default_memory_pool())
        previous = pa.default_memory_pool()
        pa.set_memory_pool(pool)
        tracemalloc.start()
        try:
            n_chunks = sum(1 for _ in read_csv(path, target="y", chunksize=2000))
            traced = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            pa.set_memory_pool(previous)
        return n_chunks, traced, pool.max_memory()

    small, large = write(60_000), write(360_000)
    size = os.path.getsize(large)
    n_small, traced_small, arrow_small = peaks(small)
    n_large, traced_large, arrow_large = peaks(large)
    assert n_large == 180
    assert traced_large < size / 20
    assert arrow_large < size / 5
    # Six times the rows, about the same peak.
    assert traced_large < 1.5 * traced_small + 2**20
    assert arrow_large < 1.5 * arrow_small + 2**20


# ----------------------------------------------------------------- in-memory data


def test_iter_chunks_over_a_pandas_frame_slices_it():
    frame = make_frame(250)
    chunks = list(iter_chunks(frame, target="y", chunksize=100))
    assert [len(c.X) for c in chunks] == [100, 100, 50]
    assert all(
        c.source == "<DataFrame>" and c.first_line is None and c.rows is None for c in chunks
    )
    X, y = concat(chunks)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, frame[FEATURES].to_numpy())
    np.testing.assert_array_equal(y, frame["y"].to_numpy())
    framed = list(iter_chunks(frame, target="y", chunksize=100, as_frame=True))
    pd.testing.assert_frame_equal(framed[1].X, frame[FEATURES].iloc[100:200])


def test_iter_chunks_over_arrays():
    X = np.arange(21, dtype=np.int32).reshape(7, 3)
    y = np.array(["a", "b"] * 3 + ["c"])
    chunks = list(iter_chunks(X, y, chunksize=3))
    assert [c.X.dtype for c in chunks] == [np.float64] * 3
    np.testing.assert_array_equal(np.vstack([c.X for c in chunks]), X)
    assert list(np.concatenate([c.y for c in chunks])) == list(y)
    assert [c.index for c in chunks] == [0, 1, 2]
    assert all(c.y is None for c in iter_chunks(X, chunksize=3))


def test_iter_chunks_errors():
    frame = make_frame(30)
    frame.loc[17, "y"] = np.nan
    stream = iter_chunks(frame, target="y", chunksize=10)
    assert len(next(stream).X) == 10
    with pytest.raises(StreamError, match="row 17") as info:
        next(stream)
    assert info.value.column == "y" and info.value.source == "<DataFrame>"
    text = make_frame(5).assign(colour="red")
    with pytest.raises(StreamError, match="as_frame=True") as info:
        next(iter_chunks(text, target="y"))
    assert info.value.column == "colour"
    chunk = next(iter_chunks(text, target="y", as_frame=True))
    assert list(chunk.X["colour"]) == ["red"] * 5
    with pytest.raises(StreamError, match="row 4"):
        list(iter_chunks(np.ones((6, 2)), np.array([0, 1, 0, 1, np.nan, 1]), chunksize=4))
    with pytest.raises(StreamError, match="no such column"):
        next(iter_chunks(frame, target="label"))


def test_iter_chunks_over_a_polars_frame():
    pl = pytest.importorskip("polars")
    frame = make_frame(120)
    polars_frame = pl.from_pandas(frame)
    chunks = list(iter_chunks(polars_frame, target="y", chunksize=50))
    assert [len(c.X) for c in chunks] == [50, 50, 20]
    X, y = concat(chunks)
    np.testing.assert_array_equal(X, frame[FEATURES].to_numpy())
    np.testing.assert_array_equal(y, frame["y"].to_numpy())
    assert chunks[0].source == "<polars.DataFrame>"
    with pytest.raises(StreamError, match="missing target"):
        list(iter_chunks(polars_frame.with_columns(pl.lit(None).alias("y")), target="y"))


# ------------------------------------------------------------------------ dispatch


def test_open_stream_dispatches_on_the_source(tmp_path):
    frame = make_frame(90)
    write_csv(tmp_path / "a.csv", frame)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "a.parquet")
    expected = frame[FEATURES].to_numpy()
    sources = [
        (str(tmp_path / "a.csv"), "y"),
        (tmp_path / "a.parquet", "y"),
        (str(tmp_path / "*.parquet"), "y"),
        (frame, "y"),
        ((expected, frame["y"].to_numpy()), None),
    ]
    for source, target in sources:
        stream = open_stream(source, target=target, chunksize=40)
        X, y = concat(list(stream))
        np.testing.assert_array_equal(X, expected)
        np.testing.assert_array_equal(y, frame["y"].to_numpy())
        assert stream.report.count == 0
    chunks = list(open_stream(str(tmp_path / "a.csv"), target="y", on_bad_rows="skip"))
    assert len(chunks) == 1
    with pytest.raises(ValueError, match="cannot tell the format"):
        open_stream(str(tmp_path / "a.dat"), target="y")


def test_parameters_are_checked_at_the_call():
    with pytest.raises(ValueError, match="on_bad_rows"):
        read_csv("x.csv", target="y", on_bad_rows="ignore")
    with pytest.raises(ValueError, match="chunksize"):
        read_csv("x.csv", target="y", chunksize=0)
    with pytest.raises(ValueError, match="also be a feature"):
        read_csv("x.csv", target="y", features=["a", "y"])


def test_a_row_longer_than_a_parser_block(tmp_path, small_blocks):
    long_text = "w" * 20_000
    text = "a,note,y\n" + "".join(
        f"{i},{long_text if i == 40 else 'short'},{i % 2}\n" for i in range(60)
    )
    path = write_text(tmp_path / "long.csv", text)
    chunks = list(read_csv(path, target="y", chunksize=25, as_frame=True))
    frame = pd.concat([c.X for c in chunks])
    assert len(frame) == 60 and frame["note"].iloc[40] == long_text
    assert [c.first_line for c in chunks] == [2, 27, 52]
