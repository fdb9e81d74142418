"""Bad files the readers must name precisely (issue 13: items 8, 10, 11, 12)."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _readers_util import check_error, concat, parse_in_small_blocks, with_row, write_text

from skocl._readers import StreamError, _csv, open_stream, read_csv, read_parquet


@pytest.fixture(params=["typed", "checked"])
def csv_path_kind(request, monkeypatch):
    """Read every file down the typed path (small blocks) and then down the checked one."""
    if request.param == "typed":
        parse_in_small_blocks(monkeypatch)
    else:
        monkeypatch.setattr(_csv, "_CSV", _csv._CsvFormat(block_size=4096, always_check=True))
    return request.param


# ----------------------------------------------------------- values beyond float32


@pytest.mark.parametrize(
    "cell, reason",
    [
        ("inf", "inf is not finite"),
        ("-inf", "-inf is not finite"),
        ("Infinity", "inf is not finite"),
        ("1e400", "inf is not finite"),
        ("1e39", "1e+39 is beyond float32's range"),
        ("-1e39", "-1e+39 is beyond float32's range"),
        ("1e300", "1e+300 is beyond float32's range"),
    ],
)
@pytest.mark.parametrize("line", [5, 33])
def test_a_value_beyond_float32_is_a_bad_value(tmp_path, csv_path_kind, cell, reason, line):
    path = write_text(tmp_path / "wild.csv", with_row(line, f"7,{cell},1"))
    with pytest.raises(StreamError) as info:
        list(read_csv(path, target="y", chunksize=10))
    check_error(info.value, path, line, "b")
    assert reason in str(info.value)
    stream = read_csv(path, target="y", chunksize=10, on_bad_rows="skip")
    chunks = list(stream)
    assert line not in np.concatenate([c.rows for c in chunks])
    assert sum(len(c.X) for c in chunks) == 39
    assert stream.report.count == 1
    ((_, at, column, said),) = stream.report.rows
    assert (at, column) == (line, "b") and reason in said


def test_float32s_largest_value_is_kept_and_max_abs_moves_the_bound(tmp_path):
    largest = float(np.finfo(np.float32).max)
    text = f"a,y\n{largest!r},0\n{-largest!r},1\n1e39,0\n1e300,1\ninf,0\n"
    path = write_text(tmp_path / "edge.csv", text)
    stream = read_csv(path, target="y", on_bad_rows="skip")
    X, _ = concat(list(stream))
    np.testing.assert_array_equal(X.ravel(), [largest, -largest])
    assert [line for _, line, _, _ in stream.report.rows] == [4, 5, 6]
    # A float64 model opts out of the float32 bound; infinity stays a bad value.
    stream = read_csv(path, target="y", on_bad_rows="skip", max_abs=np.finfo(np.float64).max)
    X, _ = concat(list(stream))
    np.testing.assert_array_equal(X.ravel(), [largest, -largest, 1e39, 1e300])
    assert [reason for *_, reason in stream.report.rows] == ["value inf is not finite"]
    stream = read_csv(path, target="y", on_bad_rows="skip", max_abs=10.0)
    assert sum(len(c.X) for c in stream) == 0
    assert "beyond max_abs=10" in stream.report.rows[0][3]
    for bad in (0, -1.0, float("nan"), "big", True):
        with pytest.raises(ValueError, match="max_abs must be a positive number"):
            read_csv(path, target="y", max_abs=bad)


def test_a_float_target_must_be_finite_but_is_not_bounded(tmp_path):
    path = write_text(tmp_path / "labels.csv", "a,y\n1,0.5\n2,1e39\n3,inf\n4,0.5\n")
    stream = read_csv(path, target="y", on_bad_rows="skip")
    chunks = list(stream)
    np.testing.assert_array_equal(chunks[0].y, [0.5, 1e39, 0.5])
    assert stream.report.rows == [(path, 4, "y", "target value inf is not finite")]


def test_allow_nan_does_not_let_infinity_through(tmp_path):
    path = write_text(tmp_path / "nan.csv", with_row(9, "7,inf,1", with_row(4, "7,,1")))
    X, _ = concat(list(read_csv(path, target="y", allow_nan=True, on_bad_rows="skip")))
    assert len(X) == 39 and np.isnan(X).sum() == 1 and np.isfinite(X[~np.isnan(X)]).all()
    with pytest.raises(StreamError, match="not finite") as info:
        list(read_csv(path, target="y", allow_nan=True))
    check_error(info.value, path, 9, "b")


def test_parquet_infinity_and_huge_values_are_bad_rows(tmp_path):
    path = str(tmp_path / "wild.parquet")
    table = pa.table(
        {
            "a": [1.0, np.inf, 3.0, 1e39, 5.0, -np.inf],
            "b": pa.array([1, 2, 3, 4, 5, 6], pa.int32()),
            "y": [0, 1, 0, 1, 0, 1],
        }
    )
    pq.write_table(table, path, row_group_size=4)
    with pytest.raises(StreamError, match="inf is not finite") as info:
        list(read_parquet(path, target="y"))
    assert (info.value.line, info.value.column) == (2, "a")
    assert "row 2, column 'a'" in str(info.value)
    stream = read_parquet(path, target="y", on_bad_rows="skip")
    X, y = concat(list(stream))
    np.testing.assert_array_equal(X, [[1.0, 1.0], [3.0, 3.0], [5.0, 5.0]])
    assert [(line, column) for _, line, column, _ in stream.report.rows] == [
        (2, "a"),
        (4, "a"),
        (6, "a"),
    ]
    assert "1e+39 is beyond float32's range" in stream.report.rows[1][3]


# ------------------------------------------------------------ encodings, directories


@pytest.mark.parametrize("packed", [False, True])
def test_a_header_that_is_not_utf8_is_named_with_its_line(tmp_path, packed):
    data = b"a,\xffb,y\n1,2,0\n"
    path = str(tmp_path / ("latin.csv.gz" if packed else "latin.csv"))
    with (gzip.open if packed else open)(path, "wb") as f:
        f.write(data)
    with pytest.raises(StreamError) as info:
        list(read_csv(path, target="y"))
    check_error(info.value, path, 1, None)
    assert "not valid UTF-8: byte 0xff in field 2" in str(info.value)
    # A quoted header name over two lines: the byte is on line 2.
    path = str(tmp_path / "two_lines.csv")
    with open(path, "wb") as f:
        f.write(b'a,"long\nname\xe9",y\n1,2,0\n')
    with pytest.raises(StreamError, match="byte 0xe9 in field 2") as info:
        list(read_csv(path, target="y"))
    check_error(info.value, path, 2, None)


def test_a_header_in_utf8_with_accents_and_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "accents.csv"
    path.write_bytes("\ufeffâge,y\n1,0\n".encode())
    stream = read_csv(path, target="y")
    assert len(next(stream).X) == 1 and stream.features == ["âge"]


def test_a_directory_is_reported_as_a_directory(tmp_path):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    for reader in (read_csv, read_parquet):
        with pytest.raises(StreamError, match="is a directory, not a data file") as info:
            list(reader(folder, target="y"))
        assert info.value.source == str(folder)
        assert "no such file" not in str(info.value)
    with pytest.raises(StreamError, match="is a directory"):
        open_stream(str(tmp_path), target="y")
    with pytest.raises(StreamError, match="no such file"):
        list(read_csv(tmp_path / "absent.csv", target="y"))


# ------------------------------------------------------------------- unclosed quotes


def audit_file(n_after: int = 1702) -> tuple[str, int, int]:
    """60 good rows, a row opening a quote on line 62, then ``n_after`` good lines."""
    rows = [f"{i},{i}.5,{i % 2}\n" for i in range(60)]
    rows.append('60,"60.5,0\n')
    rows += [f"{i},{i}.5,{i % 2}\n" for i in range(61, 61 + n_after)]
    return "a,b,y\n" + "".join(rows), 62, 62 + n_after


def test_an_unclosed_quote_is_an_error_with_its_extent(tmp_path, csv_path_kind):
    text, line, end = audit_file()
    path = write_text(tmp_path / "quote.csv", text)
    seen = []
    with pytest.raises(StreamError) as info:
        for chunk in read_csv(path, target="y", chunksize=25):
            seen.append(chunk)
    check_error(info.value, path, line, None)
    assert f"lines {line}-{end}" in str(info.value)
    assert "never closed" in str(info.value)
    # Every full chunk before the row comes first.
    assert [len(c.X) for c in seen] == [25, 25]


def test_skipping_an_unclosed_quote_reports_the_lines_it_took(tmp_path, csv_path_kind):
    text, line, end = audit_file()
    path = write_text(tmp_path / "quote.csv", text)
    stream = read_csv(path, target="y", on_bad_rows="skip")
    X, _ = concat(list(stream))
    np.testing.assert_array_equal(X[:, 0], np.arange(60))
    assert stream.report.count == 1
    ((_, at, column, reason),) = stream.report.rows
    assert (at, column) == (line, None)
    assert f"lines {line}-{end}, to the end of the file" in reason


@pytest.mark.parametrize("target_type", ["text", "int"])
def test_an_unclosed_quote_with_the_right_number_of_fields(tmp_path, target_type):
    # The quote swallows the rest of the file into the last field, which a text target
    # would have taken as a label.
    label = "a" if target_type == "text" else "0"
    text = f'x,y\n1,{label}\n2,"{label}\n3,{label}\n4,{label}\n'
    path = write_text(tmp_path / "swallow.csv", text)
    with pytest.raises(StreamError, match="lines 3-5") as info:
        list(read_csv(path, target="y"))
    check_error(info.value, path, 3, None)
    stream = read_csv(path, target="y", on_bad_rows="skip")
    chunks = list(stream)
    assert list(chunks[0].rows) == [2] and list(chunks[0].y) == [label]
    assert [line for _, line, _, _ in stream.report.rows] == [3]


def test_an_unclosed_quote_in_a_gzip_file_longer_than_a_block(tmp_path, csv_path_kind):
    text, line, end = audit_file(20_000)
    path = str(tmp_path / "quote.csv.gz")
    with gzip.open(path, "wt") as f:
        f.write(text)
    with pytest.raises(StreamError, match=f"lines {line}-{end}"):
        list(read_csv(path, target="y"))


def test_closed_quotes_over_several_lines_at_the_end_are_fine(tmp_path):
    for tail in ['9,"a\nb",1\n', '9,"a\n""b""",1', '9,"a\nb"x,1\n', '9,"a\r\nb",1\r\n']:
        path = write_text(tmp_path / "fine.csv", "a,note,y\n1,x,0\n" + tail)
        stream = read_csv(path, target="y", as_frame=True)
        frame = next(stream).X
        assert len(frame) == 2 and stream.report.count == 0, tail
    # A quote inside an unquoted field is a character, not an opening quote.
    path = write_text(tmp_path / "inch.csv", 'a,note,y\n1,x,0\n2,5" pipe\nnext,1\n')
    with pytest.raises(StreamError) as info:
        list(read_csv(path, target="y", as_frame=True))
    assert "never closed" not in str(info.value)


def test_a_file_without_a_final_newline_and_an_unclosed_quote_over_lines(tmp_path):
    path = write_text(tmp_path / "end.csv", 'a,y\n1,0\n2,"1\n3,0\n4,1')
    with pytest.raises(StreamError, match="lines 3-5") as info:
        list(read_csv(path, target="y"))
    check_error(info.value, path, 3, None)


def test_open_stream_passes_max_abs_on(tmp_path):
    path = write_text(tmp_path / "data.csv", with_row(5, "7,1e39,1"))
    with pytest.raises(StreamError, match="beyond float32"):
        list(open_stream(path, target="y"))
    X, _ = concat(list(open_stream(path, target="y", max_abs=1e300)))
    assert X[3, 1] == 1e39 and os.path.exists(path)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_short_row_that_is_not_utf8_is_named_by_its_line(tmp_path):
    # pyarrow cannot hand such a row to the handler that skips rows, so it stops there.
    path = str(tmp_path / "bytes.csv")
    with open(path, "wb") as f:
        f.write(with_row(30, "7,\xff").encode("latin-1"))
    for policy in ("raise", "skip"):
        with pytest.raises(StreamError, match="byte 0xff, which is not UTF-8") as info:
            list(read_csv(path, target="y", on_bad_rows=policy))
        check_error(info.value, path, 30, None)
        assert "expected 3 fields, saw 2" in str(info.value)


def test_a_damaged_gzip_stream_is_named(tmp_path):
    path = str(tmp_path / "cut.csv.gz")
    packed = gzip.compress(("a,b,y\n" + "".join(f"{i},{i},1\n" for i in range(5000))).encode())
    with open(path, "wb") as f:
        f.write(packed[: len(packed) // 2])
    stream = read_csv(path, target="y", chunksize=100)
    with pytest.raises(StreamError, match="cannot read the file") as info:
        list(stream)
    assert info.value.source == path and path in str(info.value)


# ----------------------------------------------------------------- patterns (issue 12)


def test_a_pattern_matching_plain_and_gzipped_csv_reads_both(tmp_path):
    write_text(tmp_path / "a.csv", "x,y\n1,0\n2,1\n")
    with gzip.open(tmp_path / "b.csv.gz", "wt") as f:
        f.write("x,y\n3,0\n4,1\n")
    write_text(tmp_path / "c.csv", "x,y\n5,1\n")
    pattern = str(tmp_path / "*.csv*")
    for reader in (read_csv, open_stream):
        chunks = list(reader(pattern, target="y"))
        assert [os.path.basename(c.source) for c in chunks] == ["a.csv", "b.csv.gz", "c.csv"]
        X, y = concat(chunks)
        np.testing.assert_array_equal(X.ravel(), [1, 2, 3, 4, 5])
        np.testing.assert_array_equal(y, [0, 1, 0, 1, 1])
    # A list mixing a pattern and a file works the same way.
    chunks = list(open_stream([pattern, str(tmp_path / "a.csv")], target="y"))
    assert [os.path.basename(c.source) for c in chunks][-1] == "a.csv"


def test_a_pattern_is_told_by_its_matches(tmp_path):
    pq.write_table(pa.table({"x": [1.0], "y": [0]}), tmp_path / "p.parquet")
    chunks = list(open_stream(str(tmp_path / "p.*"), target="y"))
    assert chunks[0].X.tolist() == [[1.0]]
    write_text(tmp_path / "p.csv", "x,y\n1,0\n")
    with pytest.raises(ValueError, match="cannot mix formats"):
        open_stream(str(tmp_path / "p.*"), target="y")
    write_text(tmp_path / "notes.md", "hello")
    with pytest.raises(ValueError, match="cannot tell the format of .*notes.md"):
        open_stream(str(tmp_path / "*"), target="y")
    # A pattern that matches nothing is the reader's error, as for read_csv.
    with pytest.raises(StreamError, match="matches no file"):
        list(open_stream(str(tmp_path / "none*.csv*"), target="y"))
    with pytest.raises(StreamError, match="matches no file"):
        list(open_stream(str(tmp_path / "none*.parquet"), target="y"))


def test_an_unclosed_quote_in_the_header_or_on_the_last_line(tmp_path):
    path = write_text(tmp_path / "head.csv", 'a,"y\n1,2\n3,4\n')
    with pytest.raises(StreamError, match="the header: a quote .* never closed: lines 1-3"):
        list(read_csv(path, target="y"))
    # Only the last line is lost: the message says so without a range.
    path = write_text(tmp_path / "last.csv", 'a,y\n1,0\n2,"x""\n')
    stream = read_csv(path, target="y", on_bad_rows="skip")
    assert [c.X.tolist() for c in stream] == [[[1.0]]]
    assert "never closed: line 3, to the end of the file" in stream.report.rows[0][3]


def test_a_value_that_is_not_utf8_says_so(tmp_path):
    path = str(tmp_path / "value.csv")
    with open(path, "wb") as f:
        f.write(with_row(20, "7,\xe96,1").encode("latin-1"))
    stream = read_csv(path, target="y", on_bad_rows="skip")
    assert sum(len(c.X) for c in stream) == 39
    ((_, line, column, reason),) = stream.report.rows
    assert (line, column) == (20, "b")
    assert "byte 0xe9 is not UTF-8" in reason
