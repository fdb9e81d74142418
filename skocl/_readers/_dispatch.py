"""One front door for every source: files told by their name, data by its type."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._csv import read_csv
from ._files import _directory_error
from ._memory import _is_pandas_frame, _is_polars_frame, iter_chunks
from ._parquet import read_parquet
from ._types import StreamChunk

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".gz", ".txt", ".txt.gz")


def _format_of(path: str) -> str:
    if os.path.isdir(path):
        raise _directory_error(path)
    name = path.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    raise ValueError(
        f"cannot tell the format of {path!r} from its name: call read_csv or read_parquet"
    )


def _formats_of(item: str) -> set[str]:
    """The formats of the files a path or a glob pattern names.

    A pattern is told by its matches, so that ``data/*.csv*`` (plain and gzipped CSV)
    is CSV. A pattern that matches nothing goes to the CSV reader unless its name says
    Parquet; the reader then says that it matches no file.
    """
    if not glob.has_magic(item) or os.path.exists(item):
        return {_format_of(item)}
    matches = [match for match in glob.glob(item) if os.path.isfile(match)]
    if matches:
        return {_format_of(match) for match in matches}
    return {"parquet" if item.lower().endswith(_PARQUET_SUFFIXES) else "csv"}


def open_stream(
    source: Any, *, target: str | list[str] | None, chunksize: int = 10_000, **kwargs: Any
) -> Iterator[StreamChunk]:
    """Open any supported source as a stream of chunks.

    Parameters
    ----------
    source : str, path-like, list of them, DataFrame, ndarray or (X, y) tuple
        Files (``.csv``, ``.csv.gz``, ``.parquet``; glob patterns allowed; the format
        is told by the name, and a pattern's by the names of its matches, so that
        ``"data/*.csv*"`` reads plain and gzipped CSV files together) or in-memory
        data.
    target : str, list of str or None
        The label column, as in :func:`read_csv`, or a list of two or more label
        columns for several targets (see Notes); None for arrays (labels come in the
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

    Notes
    -----
    **Several targets.** With ``target`` a list of column names, each chunk's ``y``
    has shape (n_rows, n_targets), a column per target in the order given, ready for
    :meth:`~skocl.OnlineFineTuneClassifier.partial_fit` with one task per column. It
    is float64 with NaN for a missing label when every target column is float;
    otherwise object, each label a Python value of its column's type (int, float,
    bool, str) and None for a missing one, so that no label changes type. A missing
    value in one target is a missing label of that task; a row missing every target
    is a bad row ("no target value"), raised or skipped by ``on_bad_rows`` in files,
    an error in DataFrames. A list of one name is refused: a single target is a
    string, and gives ``y`` of shape (n_rows,).

    Examples
    --------
    >>> import pandas as pd
    >>> from skocl.stream import open_stream
    >>> frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": ["x", "y", "x"]})
    >>> [c.y.tolist() for c in open_stream(frame, target="label", chunksize=2)]
    [['x', 'y'], ['x']]

    Several targets: a missing label is None here, and a row with none is bad:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tasks.csv"
    >>> _ = path.write_text("a,size,label\\n1,0,x\\n2,1,\\n3,,x\\n4,,\\n")
    >>> stream = open_stream(path, target=["size", "label"], on_bad_rows="skip")
    >>> [c.y.tolist() for c in stream]
    [[[0, 'x'], [1, None], [None, 'x']]]
    >>> [(line, reason) for _, line, _, reason in stream.report.rows]
    [(5, "no target value: every target column ('size', 'label') is missing")]
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
    formats = set().union(*(_formats_of(os.fspath(item)) for item in items))
    if len(formats) != 1:
        raise ValueError(f"cannot mix formats in one stream: {sorted(formats)}")
    reader = read_parquet if formats == {"parquet"} else read_csv
    return reader(
        items if len(items) > 1 else items[0], target=target, chunksize=chunksize, **kwargs
    )
