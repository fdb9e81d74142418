"""Chunked readers of labelled data for ``partial_fit``.

Every reader here is an iterator of :class:`StreamChunk`: a block of at most
``chunksize`` rows with float64 features ``X`` and labels ``y``, ready to hand to
``OnlineFineTuneClassifier.partial_fit``. Memory is bounded by the chunk (plus, for
CSV, pyarrow's parser, which holds a fixed ~10 MiB; for Parquet, one row group), never
by the file.

The package is cut by input kind:

* ``_types``: the public types (:class:`StreamChunk`, :class:`StreamError`,
  :class:`BadRowReport`), the reader options and the shape of every error;
* ``_screen``: the columns of a stream, value conversion and bad-row screening;
* ``_files``: the one file loop (paths, headers, chunk assembly) behind
  :func:`read_csv` and :func:`read_parquet`, each a thin front door over it;
* ``_csv`` and ``_lines``: CSV parsing and the line number of every row;
* ``_parquet``: Parquet files;
* ``_memory``: DataFrames and arrays (:func:`iter_chunks`);
* ``_dispatch``: :func:`open_stream`, which picks a reader for a source.
"""

from ._csv import read_csv
from ._dispatch import open_stream
from ._memory import iter_chunks
from ._parquet import read_parquet
from ._types import MAX_REPORTED_ROWS, BadRowReport, StreamChunk, StreamError

__all__ = [
    "MAX_REPORTED_ROWS",
    "BadRowReport",
    "StreamChunk",
    "StreamError",
    "iter_chunks",
    "open_stream",
    "read_csv",
    "read_parquet",
]
