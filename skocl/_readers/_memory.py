"""In-memory data: pandas and polars DataFrames, arrays with their labels."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._screen import _label_matrix
from ._types import (
    BadRowReport,
    StreamChunk,
    _check_chunksize,
    _ChunkStream,
    _fail,
    _show,
    _targets_of,
)


def _is_pandas_frame(data: object) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


def _is_polars_frame(data: object) -> bool:
    pl = sys.modules.get("polars")
    return pl is not None and isinstance(data, pl.DataFrame)


def _object_missing(values: np.ndarray) -> np.ndarray:
    pd = sys.modules.get("pandas")
    if pd is not None:
        return np.asarray(pd.isna(values), dtype=bool)
    is_missing = np.frompyfunc(lambda v: v is None or v != v, 1, 1)
    return np.asarray(is_missing(values), dtype=bool)


def _labels_missing(y: np.ndarray) -> np.ndarray | None:
    if y.dtype.kind in "fc":
        mask = np.isnan(y)
    elif y.dtype.kind == "O":
        mask = _object_missing(y)
    else:
        return None
    return mask if mask.any() else None


def _check_labels(y: np.ndarray, source: str, column: str | None, start: int) -> None:
    """A missing label is an error; of labels with a column per target (2-D), only a
    row whose every label is missing is (a missing label teaches its task nothing)."""
    missing = _labels_missing(y)
    if missing is not None and y.ndim == 2:
        missing = missing.all(1) if missing.all(1).any() else None
    if missing is not None:
        i = start + int(np.flatnonzero(missing)[0])
        what = "no target value" if y.ndim == 2 else "missing target value"
        raise _fail(source, None, column, f"{what} in row {i} (0-based)")


def _frame_chunks(
    data: Any, target: Any, chunksize: int, as_frame: bool, polars: bool
) -> Iterator[StreamChunk]:
    source = "<polars.DataFrame>" if polars else "<DataFrame>"
    targets = _targets_of(target)
    for name in targets:
        if name not in list(data.columns):
            what = "a target" if len(targets) > 1 else "the target"
            raise _fail(source, None, name, f"no such column ({what})")
    features = [name for name in data.columns if name not in targets]
    for name in features:
        dtype = data.schema[name] if polars else data[name].dtype
        if polars:
            import polars as pl

            numeric = dtype.is_numeric() or dtype == pl.Boolean
        else:
            import pandas as pd

            numeric = pd.api.types.is_numeric_dtype(dtype)
        if not numeric and not as_frame:
            raise _fail(
                source,
                None,
                str(name),
                f"the column holds {dtype}, not numbers: pass as_frame=True, or drop it",
            )
    n = len(data)
    for index, start in enumerate(range(0, n, chunksize)):
        if polars:
            part = data.slice(start, chunksize)
            X_part = part.select(features)
            X = X_part.to_pandas() if as_frame else X_part.to_numpy().astype(np.float64)
        else:
            part = data.iloc[start : start + chunksize]
            X_part = part[features]
            X = X_part if as_frame else X_part.to_numpy(dtype=np.float64, na_value=np.nan)
        y = None if target is None else _frame_labels(part, target, source, start, polars)
        yield StreamChunk(X, y, source, None, index, None)


def _frame_labels(part: Any, target: Any, source: str, start: int, polars: bool) -> np.ndarray:
    """The labels of a DataFrame slice as numpy. Of one target, a missing label is an
    error; of several (a list), ``y`` has a column per target (see
    :func:`~skocl._readers._screen._label_matrix`) and a row with no label is an error."""
    if not isinstance(target, list):
        labels, missing = _frame_column(part, target, polars)
        if missing.any():
            i = start + int(np.flatnonzero(missing)[0])
            raise _fail(source, None, target, f"missing target value in row {i} (0-based)")
        return labels
    columns, unlabelled = [], np.ones(len(part), dtype=bool)
    for name in target:
        labels, missing = _frame_column(part, name, polars)
        columns.append(labels)
        unlabelled &= missing
    if unlabelled.any():
        i = start + int(np.flatnonzero(unlabelled)[0])
        names = ", ".join(map(repr, target))
        raise _fail(
            source,
            None,
            None,
            f"no target value in row {i} (0-based): every target column ({names}) is missing",
        )
    return _label_matrix(columns)


def _frame_column(part: Any, name: Any, polars: bool) -> tuple[np.ndarray, np.ndarray]:
    """A label column of a DataFrame slice as numpy, and where it has no label: NaN
    there in a float column, None in any other."""
    if polars:
        column = part.get_column(name)
        missing = column.is_null().to_numpy()
        if column.dtype.is_float():
            missing = missing | column.is_nan().fill_null(True).to_numpy()
        elif missing.any():
            # to_numpy would turn integers with nulls into floats.
            return np.array(column.to_list(), dtype=object), missing
        return column.to_numpy(), missing
    column = part[name]
    missing = column.isna().to_numpy()
    dtype = column.dtype
    if not isinstance(dtype, np.dtype) and getattr(dtype, "kind", "O") in "iufb":
        # Masked (nullable) columns become plain numpy ones where they can.
        if dtype.kind == "f":
            return column.to_numpy(dtype=dtype.numpy_dtype, na_value=np.nan), missing
        if not missing.any():
            return column.to_numpy(dtype=dtype.numpy_dtype), missing
        return column.to_numpy(dtype=object, na_value=None), missing
    labels = column.to_numpy()
    if missing.any() and labels.dtype.kind != "f":
        labels = labels.astype(object)
        labels[missing] = None
    return labels, missing


def _array_chunks(X: Any, y: Any, chunksize: int, as_frame: bool) -> Iterator[StreamChunk]:
    source = "<ndarray>"
    X = np.asarray(X)
    if X.ndim != 2:
        raise _fail(source, None, None, f"X must be 2-D, got an array of shape {X.shape}")
    if y is not None:
        y = np.asarray(y)
        if y.ndim not in (1, 2) or len(y) != len(X):
            raise _fail(
                source,
                None,
                None,
                "y must hold one label (1-D) or one label per target (2-D) per row of X: "
                f"shapes {X.shape}, {y.shape}",
            )
    numeric = X.dtype.kind in "biuf"
    if not numeric and X.dtype.kind != "O":
        raise _fail(source, None, None, f"X holds {X.dtype}, not numbers")
    for index, start in enumerate(range(0, len(X), chunksize)):
        part = X[start : start + chunksize]
        if as_frame:
            import pandas as pd

            features = pd.DataFrame(part)
            features.index = range(start, start + len(part))
        else:
            try:
                features = part.astype(np.float64)
            except (TypeError, ValueError):
                for j in range(part.shape[1]):
                    for i, value in enumerate(part[:, j]):
                        try:
                            float(value)
                        except (TypeError, ValueError):
                            raise _fail(
                                source,
                                None,
                                str(j),
                                f"cannot read {_show(value)} in row {start + i} (0-based) "
                                "as a number",
                            ) from None
                raise
        labels = None
        if y is not None:
            labels = y[start : start + chunksize]
            _check_labels(labels, source, None, start)
        yield StreamChunk(features, labels, source, None, index, None)


def iter_chunks(
    data: Any,
    y: Any = None,
    *,
    target: str | None = None,
    chunksize: int = 10_000,
    as_frame: bool = False,
) -> Iterator[StreamChunk]:
    """Cut in-memory data into chunks: the in-memory twin of :func:`read_csv`.

    Parameters
    ----------
    data : pandas.DataFrame, polars.DataFrame or array-like of shape (n_samples, n_features)
        The rows. A DataFrame takes its labels from the ``target`` column (or from
        ``y``); an array takes them from ``y``.
    y : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
        Labels, when they are not a column of ``data``; a column per target for several
        (a missing label NaN or None; a row with none is an error naming it).
    target : str or list of str, default=None
        Name of the label column of a DataFrame; a list of two or more names for
        several targets, a column of ``y`` each, as in :func:`read_csv` (a missing
        label is then NaN in a float ``y``, None in an object one).
    chunksize : int, default=10_000
        Rows per chunk; the last may be shorter.
    as_frame : bool, default=False
        Yield ``X`` as a pandas DataFrame (a slice of the given one), so that text
        columns can pass to a pipeline.

    Returns
    -------
    chunks : iterator of StreamChunk
        Lazy; ``first_line`` and ``rows`` are None. It has a ``report`` attribute
        (always empty: nothing is skipped here) like the file readers.

    Raises
    ------
    StreamError
        While iterating: a target column that does not exist, a feature column that is
        not numeric (with ``as_frame=False``), a missing label (of several targets, a
        row with no label).

    Notes
    -----
    Chunks are slices: only one chunk at a time is converted to float64, never the
    whole of ``data``. NaN in features passes through (the estimator decides);
    ``as_frame=True`` with a polars DataFrame yields pandas DataFrames.

    Examples
    --------
    >>> import numpy as np
    >>> from skocl.stream import iter_chunks
    >>> X = np.arange(10).reshape(5, 2)
    >>> [(c.X.shape, c.y.tolist()) for c in iter_chunks(X, [0, 1, 0, 1, 1], chunksize=2)]
    [((2, 2), [0, 1]), ((2, 2), [0, 1]), ((1, 2), [1])]
    """
    _check_chunksize(chunksize)
    targets = _targets_of(target)
    if target is not None and y is not None:
        raise ValueError("give the labels either as y or as the target column, not both")
    stream = _ChunkStream(BadRowReport(), target)
    if _is_pandas_frame(data) or _is_polars_frame(data):
        polars = _is_polars_frame(data)
        stream.features = [name for name in data.columns if name not in targets]
        stream._chunks = _frame_chunks(data, target, int(chunksize), bool(as_frame), polars)
        if y is not None:
            stream._chunks = _with_labels(stream._chunks, np.asarray(y), len(data))
    else:
        if target is not None:
            raise ValueError("target names a column: it needs a pandas or polars DataFrame")
        stream._chunks = _array_chunks(data, y, int(chunksize), bool(as_frame))
    return stream


def _with_labels(chunks: Iterator[StreamChunk], y: np.ndarray, n: int) -> Iterator[StreamChunk]:
    if y.ndim not in (1, 2) or len(y) != n:
        raise _fail(
            "<DataFrame>", None, None, f"y must be 1-D or 2-D with {n} rows, got {y.shape}"
        )
    start = 0
    for chunk in chunks:
        labels = y[start : start + len(chunk.X)]
        _check_labels(labels, chunk.source, None, start)
        start += len(chunk.X)
        yield chunk._replace(y=labels)
