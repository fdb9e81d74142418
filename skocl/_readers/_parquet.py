"""Parquet files: typed columns read one row group at a time."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ._files import _Header, _open_files
from ._screen import _arrow_type, _Block, _cast_locating, _Layout, _settle_block
from ._types import _KIND_TEXT, FLOAT32_MAX, BadRowReport, StreamChunk, _arrow, _fail, _Options

if TYPE_CHECKING:
    import pyarrow as pa


def _family(dtype: pa.DataType) -> str:
    pa = _arrow()[0]
    types = pa.types
    if types.is_dictionary(dtype):
        dtype = dtype.value_type
    if types.is_boolean(dtype):
        return "bool"
    if types.is_integer(dtype):
        return "int"
    if types.is_floating(dtype) or types.is_decimal(dtype):
        return "float"
    if (
        types.is_string(dtype)
        or types.is_large_string(dtype)
        or (hasattr(types, "is_string_view") and types.is_string_view(dtype))
    ):
        return "string"
    if types.is_null(dtype):
        return "null"
    return "other"


def _parquet_kinds(
    path: str, schema: pa.Schema, layout: _Layout, opts: _Options, first: bool
) -> None:
    """Fix column kinds from the first file's schema; check later files against them."""
    for name in layout.used:
        family = _family(schema.field(name).type)
        if name in layout.targets:
            kind = {"null": "float", "other": "string"}.get(family, family)
        elif family in ("int", "float", "bool", "null"):
            kind = "float"
        elif opts.as_frame:
            kind = "string"
        else:
            raise _fail(
                path,
                None,
                name,
                f"the column holds {schema.field(name).type}, not numbers: read it with "
                "as_frame=True, or leave it out of features",
            )
        if first:
            layout.kinds[name] = kind
        elif kind != layout.kinds[name] and family != "null":
            raise _fail(
                path,
                None,
                name,
                f"the column holds {schema.field(name).type} here but "
                f"{_KIND_TEXT[layout.kinds[name]]} in {os.path.basename(layout.source)}",
            )


@dataclass(frozen=True)
class _ParquetFormat:
    """Parquet files have types and no lines: a row's "line" is its 1-based number."""

    unit: ClassVar[str] = "row"

    def header(self, path: str) -> _Header:
        pa = _arrow()[0]
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise _fail(path, None, None, f"not a readable Parquet file: {exc}") from None
        return _Header(list(schema.names), None, schema)

    def fix_kinds(
        self, files: list[str], header: _Header, layout: _Layout, opts: _Options
    ) -> None:
        _parquet_kinds(layout.source, header.info, layout, opts, first=True)

    def check_kinds(self, path: str, header: _Header, layout: _Layout, opts: _Options) -> None:
        _parquet_kinds(path, header.info, layout, opts, first=False)

    def blocks(
        self, path: str, header: _Header, layout: _Layout, opts: _Options
    ) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        pa, pc, _ = _arrow()
        import pyarrow.parquet as pq

        used = layout.used
        try:
            # Pages written with checksums are checked: a damaged page is then an error,
            # not wrong values.
            parquet = pq.ParquetFile(path, page_checksum_verification=True)
        except (pa.ArrowException, OSError) as exc:
            raise _fail(path, None, None, f"not a readable Parquet file: {exc}") from None
        with parquet:
            row = 1
            for batch in parquet.iter_batches(
                batch_size=opts.chunksize, columns=used, use_threads=False
            ):
                n = batch.num_rows
                lines = row + np.arange(n, dtype=np.int64)
                row += n
                arrays, failures = {}, {}
                for name in used:
                    arr = batch.column(name)
                    if pa.types.is_dictionary(arr.type):
                        arr = arr.dictionary_decode()
                    kind = layout.kinds[name]
                    if kind == "float":
                        arr = pc.cast(arr, pa.float64(), safe=False)
                    else:
                        arr, fail = _cast_locating(arr, _arrow_type(kind))
                        if fail is not None:
                            failures[name] = fail
                    arrays[name] = arr
                raw = {name: batch.column(name) for name in used}
                block = _Block(arrays, failures, raw, lines)
                yield from _settle_block(path, block, layout, opts, unit="row")


def read_parquet(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    target: str | None,
    chunksize: int = 10_000,
    features: list[str] | None = None,
    on_bad_rows: str = "raise",
    allow_nan: bool = False,
    as_frame: bool = False,
    report: BadRowReport | None = None,
    max_abs: float = FLOAT32_MAX,
) -> Iterator[StreamChunk]:
    """Read labelled rows from Parquet files in chunks.

    Batches come from :meth:`pyarrow.parquet.ParquetFile.iter_batches`, so memory is
    bounded by a row group of the file and the chunk, not by the file.

    Parameters
    ----------
    paths : str, path-like or list of them
        One file, a list of files, or glob patterns (matches in sorted order).
    target : str, list of str or None
        Name of the label column; None for a stream without labels; a list of two or
        more names for several targets, as in :func:`read_csv`.
    chunksize : int, default=10_000
        Rows per chunk; a chunk never spans two files.
    features : list of str, default=None
        Feature columns in the order wanted; None takes every column but the target.
    on_bad_rows : {"raise", "skip"}, default="raise"
        As in :func:`read_csv`.
    allow_nan : bool, default=False
        Let missing features through as NaN; a missing target is always bad (of
        several targets, a row missing every one).
    as_frame : bool, default=False
        Yield ``X`` as a pandas DataFrame; text columns then stay text.
    report : BadRowReport, default=None
        Where dropped rows are recorded; the ``report`` attribute of the iterator.
    max_abs : float, default=3.4028234663852886e+38
        The largest magnitude a feature value may have (float32's largest by
        default), as in :func:`read_csv`; ``inf`` and ``-inf`` are always bad values.

    Returns
    -------
    chunks : iterator of StreamChunk
        Lazy, with ``report`` and ``close()`` as for :func:`read_csv`.

    See Also
    --------
    read_csv : The same for CSV files, with the rules in full.

    Notes
    -----
    Parquet files have types and no lines: "line" in messages, ``first_line`` and
    ``rows`` is the 1-based row number in the file. Numeric and boolean feature
    columns become float64; text features need ``as_frame=True``. A later file whose
    column holds another kind of value (text where the first file had numbers, or
    floats where it had integer labels) is an error; integer widths may differ.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> from skocl.stream import read_parquet
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.parquet"
    >>> pq.write_table(pa.table({"a": [1, 3, 5], "y": ["no", "yes", "no"]}), path)
    >>> [(c.X.ravel().tolist(), c.y.tolist()) for c in read_parquet(path, target="y",
    ...                                                             chunksize=2)]
    [([1.0, 3.0], ['no', 'yes']), ([5.0], ['no'])]
    """
    opts = _Options.checked(
        target, chunksize, features, on_bad_rows, allow_nan, as_frame, report, max_abs
    )
    return _open_files(_ParquetFormat(), paths, opts)
