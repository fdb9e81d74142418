"""The values no step of a :class:`~skocl.StreamPipeline` may learn from.

A chunk is screened once, on its raw columns, before the first step: ``inf``, a
magnitude beyond float32's largest, and NaN unless the pipeline's first step takes
missing values. The first such value is named by its row and column, and by its file
and line when the chunk is a :class:`~skocl.stream.StreamChunk` read from a file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from ._readers import StreamChunk, StreamError

__all__ = ["check_chunk_values"]

# skocl's networks compute in float32 by default; a larger magnitude becomes inf there,
# and in a running scaler it inflates scale_ for good.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _float_columns(X: Any) -> tuple[np.ndarray, list[int], list[Any] | None] | None:
    """The columns of ``X`` that hold floats, as a 2-D float64 array, with their
    positions in ``X`` and, for a DataFrame, their names; None when there are none."""
    if hasattr(X, "select_dtypes") and hasattr(X, "columns"):  # pandas
        cols = [j for j, dt in enumerate(X.dtypes) if getattr(dt, "kind", "O") in "fc"]
        if not cols:
            return None
        part = X.iloc[:, cols].to_numpy(dtype=np.float64, na_value=np.nan)
        return part, cols, [X.columns[j] for j in cols]
    arr = X if isinstance(X, np.ndarray) else np.asarray(X)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        return None
    if arr.dtype.kind in "fc":
        return arr.real, list(range(arr.shape[1])), None
    if arr.dtype.kind != "O":
        return None  # integers, booleans and text cannot overflow or be NaN
    found, cols = [], []
    for j in range(arr.shape[1]):  # mixed columns (categories and numbers)
        try:
            found.append(arr[:, j].astype(np.float64))
        except (TypeError, ValueError):
            continue
        cols.append(j)
    return (np.column_stack(found), cols, None) if cols else None


def _bad_mask(values: np.ndarray, allow_nan: bool) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(values) <= _FLOAT32_MAX)  # NaN compares False
    if allow_nan:
        bad &= ~np.isnan(values)
    return bad


def _describe(value: float) -> str:
    if np.isnan(value):
        return "missing value (NaN)"
    if np.isinf(value):
        return f"{value} is not finite"
    return f"{value:.6g} is beyond float32's range (largest magnitude {_FLOAT32_MAX:.4g})"


def check_chunk_values(
    X: Any, *, allow_nan: bool, names: Any = None, chunk: StreamChunk | None = None
) -> None:
    """Refuse a chunk holding ``inf``, a magnitude beyond float32's, or (unless
    ``allow_nan``) NaN, naming the first such value's place, before any step runs."""
    if sparse.issparse(X):
        coo = sparse.coo_array(X)
        bad = _bad_mask(coo.data.astype(np.float64, copy=False), allow_nan)
        if not bad.any():
            return
        order = np.lexsort((coo.col[bad], coo.row[bad]))[0]
        row, col = int(coo.row[bad][order]), int(coo.col[bad][order])
        value, n_bad, frame_names = float(coo.data[bad][order]), int(bad.sum()), None
    else:
        found = _float_columns(X)
        if found is None:
            return
        values, cols, frame_names = found
        bad = _bad_mask(values, allow_nan)
        if not bad.any():
            return
        row, j = (int(i) for i in np.argwhere(bad)[0])
        col, value, n_bad = cols[j], float(values[row, j]), int(bad.sum())
        if frame_names is not None:
            frame_names = frame_names[j]
    if frame_names is not None:
        column = str(frame_names)
    elif names is not None and col < len(names):
        column = str(names[col])
    else:
        column = None
    more = f" ({n_bad} such values in the chunk)" if n_bad > 1 else ""
    advice = "fix or drop the row"
    if np.isnan(value):
        advice += (
            ", or impute missing values in a first step that takes NaN (e.g. a fitted "
            "SimpleImputer)"
        )
    reason = (
        f"{_describe(value)}{more}. The StreamPipeline refused the whole chunk before "
        f"any step learned from it; {advice}."
    )
    where_col = f"column {column!r}" if column is not None else f"column index {col}"
    if chunk is not None and chunk.rows is not None:
        unit = "row" if chunk.source.lower().endswith(_PARQUET_SUFFIXES) else "line"
        line = int(chunk.rows[row])
        raise StreamError(
            f"{chunk.source}, {unit} {line}, {where_col}: {reason}",
            source=chunk.source,
            line=line,
            column=column if column is not None else str(col),
        )
    if chunk is not None:
        raise StreamError(
            f"{chunk.source}, chunk {chunk.index}, row {row} of the chunk, {where_col}: {reason}",
            source=chunk.source,
            column=column if column is not None else str(col),
        )
    raise ValueError(f"row {row}, {where_col}: {reason}")
