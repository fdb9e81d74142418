"""Scaling skocl out with dask: torch threads on workers, training from and predicting
over dask collections.

A hyperparameter search needs nothing from this module: scikit-learn's searches run
their fits through joblib, and joblib's dask backend sends them to a
``dask.distributed`` cluster::

    with joblib.parallel_config(backend="dask"):
        search.fit(X, y)

What this module adds:

- :class:`TorchThreads` and :func:`limit_torch_threads`: give each torch computation on
  a worker ``n`` threads, so that the workers of one machine do not oversubscribe
  its cores;
- :func:`partial_fit_dask`: learn from a dask DataFrame or Array larger than memory,
  one partition at a time, in order, through ``partial_fit``;
- :func:`predict_dask`: ``predict`` (or ``predict_proba``, ...) over a dask collection,
  partition by partition, as a lazy dask Array.

The module imports without dask; each function imports what it needs (``pip install
dask[dataframe,distributed]``).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from numbers import Integral
from typing import Any

import numpy as np

from ._progress import progress_bar

try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # only a worker (which has distributed) ever runs the plugin
    _WorkerPlugin = object

__all__ = ["TorchThreads", "limit_torch_threads", "partial_fit_dask", "predict_dask"]

# Read by OpenMP, MKL and OpenBLAS when a process starts: set for the worker's children.
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Column that carries y beside X's columns while a partition travels to the client.
_Y_COLUMN = "__skocl_y__"


# --------------------------------------------------------------------------- threads
def _set_torch_threads(n: int, barrier: threading.Barrier | None = None) -> None:
    import torch

    torch.set_num_threads(n)
    if barrier is not None:
        # Hold this thread until every task thread has taken a job, so that each one
        # runs exactly one; a thread busy past the timeout keeps its count.
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass


class TorchThreads(_WorkerPlugin):
    """A ``dask.distributed`` worker plugin that limits torch to ``n`` threads.

    By default torch computes with as many threads as the machine has cores, in every
    process: two dask workers on a 2-core machine would each run two threads and
    slow each other down. On each worker, ``setup`` calls ``torch.set_num_threads(n)``
    in the worker's task threads and sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
    ``OPENBLAS_NUM_THREADS`` to ``n`` in its environment, for the processes it starts.
    Workers that join the cluster later get the plugin too.

    Register it with :func:`limit_torch_threads` (or ``client.register_plugin``).
    Registering it again, with another ``n``, replaces it.

    Parameters
    ----------
    n : int, default=1
        Threads of each torch computation. With ``threads_per_worker`` task threads,
        a worker uses up to ``threads_per_worker * n`` cores.
    timeout : float, default=10.0
        Seconds ``setup`` waits for the worker's task threads; a thread still busy
        with a task by then keeps its count until the plugin is registered again.

    See Also
    --------
    limit_torch_threads : Register the plugin on a client's workers.

    Notes
    -----
    torch keeps the thread count of OpenMP per OS thread: a task thread that already
    ran torch code does not see a ``torch.set_num_threads`` call made in another
    thread. ``setup`` therefore runs the call in each of the worker's task threads (one
    job per thread), besides the worker's own thread, whose count new task threads
    start from.

    A worker started by a nanny (the default of ``LocalCluster`` and ``dask worker``)
    already starts with ``OMP_NUM_THREADS=1`` (dask's ``distributed.nanny.
    pre-spawn-environ`` setting), which torch reads at import; the plugin makes the
    limit explicit, holds for any ``n`` and for workers started otherwise.
    ``torch.set_num_interop_threads`` cannot change once torch has used its inter-op
    pool, so it is left alone; skocl does not use inter-op parallelism.

    Examples
    --------
    >>> from distributed import Client, LocalCluster  # doctest: +SKIP
    >>> from skocl.dask import TorchThreads
    >>> cluster = LocalCluster(n_workers=2, threads_per_worker=1)  # doctest: +SKIP
    >>> client = Client(cluster)  # doctest: +SKIP
    >>> client.register_plugin(TorchThreads(n=1))  # doctest: +SKIP
    """

    name = "skocl-torch-threads"

    def __init__(self, n: int = 1, timeout: float = 10.0) -> None:
        if not isinstance(n, Integral) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}.")
        self.n = int(n)
        self.timeout = timeout

    async def setup(self, worker) -> None:
        """Set the thread count on ``worker``: environment, worker thread, task threads."""
        for var in _THREAD_ENV:
            os.environ[var] = str(self.n)
        _set_torch_threads(self.n)
        executor = getattr(worker, "executors", {}).get("default")
        nthreads = worker.state.nthreads
        if executor is None or nthreads < 1:
            return
        barrier = threading.Barrier(nthreads, timeout=self.timeout)
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(executor, _set_torch_threads, self.n, barrier)
                for _ in range(nthreads)
            )
        )


def limit_torch_threads(client, n: int = 1) -> dict:
    """Limit torch to ``n`` threads per task on every worker of ``client``'s cluster.

    Registers a :class:`TorchThreads` plugin, so workers that join later are limited
    too. Call it right after creating the client, before a search or
    :func:`predict_dask` runs there.

    Parameters
    ----------
    client : distributed.Client
        A client of the cluster.
    n : int, default=1
        Threads of each torch computation.

    Returns
    -------
    replies : dict
        The workers' replies to the registration, by worker address.

    See Also
    --------
    TorchThreads : The plugin, with the details.

    Examples
    --------
    >>> import joblib
    >>> from distributed import Client, LocalCluster  # doctest: +SKIP
    >>> from skocl.dask import limit_torch_threads
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> _ = limit_torch_threads(client, n=1)  # doctest: +SKIP
    >>> with joblib.parallel_config(backend="dask"):  # doctest: +SKIP
    ...     search.fit(X, y)
    """
    return client.register_plugin(TorchThreads(n))


# --------------------------------------------------------------------------- training
def partial_fit_dask(
    estimator,
    X,
    y=None,
    *,
    target: str | None = None,
    classes=None,
    progress: bool = True,
):
    """Train ``estimator`` with ``partial_fit`` on a dask collection, one partition at
    a time, in order.

    Partition ``i`` (rows of ``X`` and the matching ``y``) is computed, **brought to
    this process** (the client), learned from with ``estimator.partial_fit`` and
    dropped before partition ``i + 1`` is computed: this process holds one partition
    at a time, and the cluster (or dask's local scheduler) computes it. The learning
    itself runs here, one partition after the other, as ``partial_fit`` requires.

    Parameters
    ----------
    estimator : estimator with partial_fit
        An :class:`~skocl.OnlineFineTuneClassifier`, a :class:`~skocl.StreamPipeline`
        or any scikit-learn estimator with ``partial_fit``; updated in place.
    X : dask.dataframe.DataFrame or dask.array.Array of shape (n_samples, n_features)
        The data. An Array is split along rows only (column chunks are joined); a
        DataFrame reaches ``partial_fit`` as pandas DataFrames, with its column names.
    y : dask.dataframe.Series or dask.array.Array of shape (n_samples,), default=None
        Targets: a Series with as many partitions as the DataFrame ``X`` (partition
        ``i`` of each go together), or an Array for the Array ``X`` (re-chunked to
        ``X``'s row chunks if they differ). None with ``target=None`` calls
        ``partial_fit(X_part)`` without targets (a scaler, IncrementalPCA).
    target : str, default=None
        Name of the column of the DataFrame ``X`` that holds the targets (the other
        columns are the features); instead of ``y``.
    classes : array-like, default=None
        Every label the data can hold, passed to the first ``partial_fit`` call (a
        fitted estimator checks it against its ``classes_``).
    progress : bool, default=True
        Show a tqdm progress bar over the partitions when attached to a terminal and
        tqdm is installed.

    Returns
    -------
    estimator : object
        The estimator, updated.

    See Also
    --------
    predict_dask : Predict over a dask collection.
    skocl.stream.prequential : Learn from a stream of in-memory chunks, scoring each.

    Notes
    -----
    Each partition is one ``partial_fit`` call: size partitions as you would size
    chunks (``X.repartition(partition_size="100MB")``). Empty partitions are skipped.
    The result is the same as calling ``partial_fit`` by hand on the computed
    partitions in order. A partition's rows are computed together with its targets,
    so data that ``X`` and ``y`` share (one file read for both) is read once.
    Each partition is a separate computation: a value that depends on the whole
    collection (``X - X.mean()``) is recomputed for each one, so compute or
    ``persist`` such values first.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skocl import OnlineFineTuneClassifier
    >>> from skocl.dask import partial_fit_dask
    >>> X, y = load_digits(return_X_y=True, as_frame=True)
    >>> frame = dd.from_pandas((X / 16).assign(digit=y), npartitions=6)
    >>> clf = OnlineFineTuneClassifier(drift_detector=None, random_state=0)
    >>> clf = partial_fit_dask(clf, frame, target="digit", classes=np.arange(10),
    ...                        progress=False)
    >>> clf.n_samples_seen_, clf.n_iter_
    (1797, 6)
    """
    parts, column = _partitions(X, y, target)
    supervised = y is not None or target is not None
    import dask

    first = True
    with progress_bar(progress, unit=" partition", total=len(parts)) as bar:
        for part in parts:
            (data,) = dask.compute(part)
            if column is not None:
                Xp, yp = data.drop(columns=[column]), data[column]
            elif supervised:
                Xp, yp = data
            else:
                Xp, yp = data, None
            del data
            if Xp.shape[0]:
                kwargs = {"classes": classes} if first and classes is not None else {}
                if supervised:
                    estimator.partial_fit(Xp, yp, **kwargs)
                else:
                    estimator.partial_fit(Xp, **kwargs)
                first = False
            bar.update(1, {"rows": str(Xp.shape[0])})
            del Xp, yp  # hold one partition at a time, not two
    return estimator


def _partitions(X, y, target) -> tuple[list, str | None]:
    """One dask Delayed per partition, and the column of the computed partition that
    holds y (None when a partition computes to X's rows or to a pair (X, y))."""
    import dask.array as da
    import dask.dataframe as dd

    if target is not None and y is not None:
        raise ValueError("Pass the targets either as y or as target=column name, not both.")
    if isinstance(X, dd.DataFrame):
        if target is not None:
            if target not in X.columns:
                raise ValueError(f"target={target!r} is not a column of X: {list(X.columns)}.")
            return list(X.to_delayed()), target
        if y is None:
            return list(X.to_delayed()), None
        return list(_join_target(X, y).to_delayed()), _Y_COLUMN
    if isinstance(X, da.Array):
        if target is not None:
            raise ValueError("target= names a column of a dask DataFrame; X is a dask Array.")
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got {X.ndim}-D.")
        if y is None:
            return list(X.rechunk({1: -1}).to_delayed().ravel()), None
        if not isinstance(y, da.Array):
            raise TypeError(
                f"y must be a dask Array when X is one; got {type(y).__name__}. Wrap an "
                "in-memory y with dask.array.from_array(y, chunks=X.chunks[0])."
            )
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D; got shape {y.shape}.")
        if y.chunks[0] != X.chunks[0]:
            if any(math.isnan(c) for c in (*X.chunks[0], *y.chunks[0])):
                raise ValueError(
                    "X and y have different row chunks, some of unknown size: call "
                    "compute_chunk_sizes() on them first."
                )
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"X has {X.shape[0]} rows and y {y.shape[0]}.")
            y = y.rechunk({0: X.chunks[0]})  # the partitions are X's
        # One block per row chunk holding (X rows, y rows): both computed in one task
        # graph, so inputs they share are read once.
        pairs = da.blockwise(
            _pair,
            "i",
            X,
            "ij",
            y,
            "i",
            concatenate=True,
            dtype=object,
            meta=np.empty((0,), dtype=object),
        )
        return list(pairs.to_delayed().ravel()), None
    raise TypeError(
        f"X must be a dask DataFrame or a dask Array; got {type(X).__name__}. For data "
        "in memory, call partial_fit directly or use skocl.stream.iter_chunks."
    )


def _join_target(X, y):
    """X with y as one more column, partition ``i`` of y beside partition ``i`` of X."""
    import dask.dataframe as dd

    if isinstance(y, dd.DataFrame):
        if len(y.columns) != 1:
            raise ValueError(f"y must be a Series or have one column; it has {len(y.columns)}.")
        y = y[y.columns[0]]
    if not isinstance(y, dd.Series):
        raise TypeError(
            f"y must be a dask Series when X is a dask DataFrame; got {type(y).__name__}. "
            "Or keep the targets in X and pass target=column name."
        )
    if X.npartitions != y.npartitions:
        raise ValueError(
            f"X has {X.npartitions} partitions and y {y.npartitions}: partition i of "
            "each must hold the same rows."
        )
    if X.known_divisions and y.known_divisions and X.divisions != y.divisions:
        raise ValueError("X and y have different divisions: their partitions hold other rows.")
    if _Y_COLUMN in X.columns:
        raise ValueError(f"X has a column named {_Y_COLUMN!r}, which skocl uses internally.")
    meta = X._meta.assign(**{_Y_COLUMN: y._meta.to_numpy()})
    return dd.map_partitions(
        _with_target, X, y, meta=meta, align_dataframes=False, enforce_metadata=False
    )


def _with_target(Xp, yp):
    if len(Xp) != len(yp):
        raise ValueError(
            f"A partition of X has {len(Xp)} rows and the matching partition of y "
            f"{len(yp)}: partition i of each must hold the same rows."
        )
    return Xp.assign(**{_Y_COLUMN: yp.to_numpy()})


def _pair(Xb, yb) -> tuple:
    return Xb, yb


# --------------------------------------------------------------------------- prediction
def predict_dask(estimator, X, method: str = "predict", *, meta=None):
    """``estimator.<method>`` over a dask collection, partition by partition, as a lazy
    dask Array.

    As dask-ml's ``ParallelPostFit``: each partition (row block) of ``X`` is passed to
    the fitted estimator's ``method`` where it lies (on the cluster's workers, or in
    dask's local threads), and nothing is computed until the result is. The estimator
    is put in the task graph once and shared by the partitions' tasks.

    Parameters
    ----------
    estimator : fitted estimator
        An :class:`~skocl.OnlineFineTuneClassifier`, a :class:`~skocl.StreamPipeline`
        or any fitted scikit-learn estimator.
    X : dask.dataframe.DataFrame or dask.array.Array of shape (n_samples, n_features)
        The data. An Array is split along rows only (column chunks are joined); a
        DataFrame reaches ``method`` as pandas DataFrames, with its column names.
    method : str, default="predict"
        ``"predict"``, ``"predict_proba"``, ``"predict_log_proba"``,
        ``"decision_function"`` or another method that maps rows to rows.
    meta : numpy.ndarray, default=None
        An empty array of the output's dtype and number of dimensions (``np.empty((0,),
        dtype=object)``). None finds them by calling ``method`` on one row of zeros
        (a dummy row for a DataFrame); pass it when that row is not valid input.

    Returns
    -------
    result : dask.array.Array of shape (n_samples,) or (n_samples, n_outputs)
        Lazy. For an Array ``X`` its row chunks are ``X``'s; for a DataFrame they are
        unknown (NaN) until computed (``result.compute_chunk_sizes()``).

    See Also
    --------
    partial_fit_dask : Train from a dask collection.

    Notes
    -----
    The task graph holds the estimator itself: dask's local scheduler uses the object
    as it is when the result is computed, a distributed cluster the state pickled when
    the graph is submitted. Do not train the estimator between creating the result
    and computing it. A model on a GPU
    (``device="cuda"``) can only be unpickled by workers that have one.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skocl import OnlineFineTuneClassifier
    >>> from skocl.dask import predict_dask
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X / 16, y)
    >>> dX = da.from_array(X / 16, chunks=(500, 64))
    >>> proba = predict_dask(clf, dX, "predict_proba")
    >>> proba.shape, proba.dtype, proba.chunks[0]
    ((1797, 10), dtype('float32'), (500, 500, 500, 297))
    >>> bool((predict_dask(clf, dX).compute() == clf.predict(X / 16)).all())
    True
    """
    import dask
    import dask.array as da
    import dask.dataframe as dd
    from sklearn.utils.validation import check_is_fitted

    if not callable(getattr(estimator, method, None)):
        raise ValueError(f"{type(estimator).__name__} has no method {method!r}.")
    check_is_fitted(estimator)
    if isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got {X.ndim}-D.")
        X = X.rechunk({1: -1})
        sample = np.zeros((1, X.shape[1]), dtype=X.dtype)
    elif isinstance(X, dd.DataFrame):
        sample = X._meta_nonempty.iloc[:1]
    else:
        raise TypeError(
            f"X must be a dask DataFrame or a dask Array; got {type(X).__name__}. For data "
            f"in memory, call estimator.{method}(X)."
        )
    if meta is None:
        meta = _infer_meta(estimator, method, sample)
    meta = np.asarray(meta)
    if meta.ndim not in (1, 2):
        raise ValueError(f"meta must be 1-D or 2-D; got {meta.ndim}-D.")
    empty = np.empty((0, *meta.shape[1:]), dtype=meta.dtype)
    # pure=False: a random key, so that the model is not hashed (tokenized) for a key.
    model = dask.delayed(estimator, pure=False)
    if isinstance(X, dd.DataFrame):
        return X.map_partitions(_apply, model, method, empty, meta=empty)
    if meta.ndim == 1:
        shape = {"drop_axis": 1, "chunks": (X.chunks[0],)}
    else:
        shape = {"chunks": (X.chunks[0], (meta.shape[1],))}
    return X.map_blocks(_apply, model, method, empty, dtype=meta.dtype, meta=empty, **shape)


def _infer_meta(estimator, method: str, sample) -> np.ndarray:
    try:
        out = np.asarray(getattr(estimator, method)(sample))
    except Exception as exc:
        raise ValueError(
            f"Could not find the output type of {type(estimator).__name__}.{method} by "
            f"calling it on one dummy row ({type(exc).__name__}: {exc}). Pass meta=, an "
            "empty array of the output's dtype and dimensions, e.g. "
            "np.empty((0,), dtype=object) or np.empty((0, n_classes))."
        ) from exc
    return out[:0]


def _apply(block, estimator, method: str, empty: np.ndarray) -> Any:
    # scikit-learn's validation rejects zero rows; an empty partition predicts nothing.
    if block.shape[0] == 0:
        return empty
    return getattr(estimator, method)(block)
