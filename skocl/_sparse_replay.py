"""A replay memory for sparse rows: CSR rows kept sparse, bounded in rows and in bytes.

Which rows stay is decided by :class:`skocl._continual.ReplayMemory` itself, run on row
handles (one integer per row) instead of the rows: the reservoir and class-balanced
selection are the dense memory's, and this store only keeps the CSR rows whose handles
the selection holds.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ._continual import SAME_INPUTS_Z, ReplayMemory, replay_counts
from ._rows import FORWARD_ROWS
from ._sparse import SparseRows, csr_rows

DEFAULT_MAX_BYTES = 64 * 2**20


class SparseReplayMemory:
    """A bounded memory of past sparse rows, replayed alongside new data (rehearsal).

    Selection is :class:`~skocl._continual.ReplayMemory`'s (``"reservoir"``: a uniform
    sample of every row seen; ``"class_balanced"``: an equal share per class seen, a
    uniform sample of each class in it), applied to row handles. The rows themselves
    are kept in CSR form (row pointers, column indices, values), so a row costs its
    non-zeros, whatever the number of features.

    Two bounds hold after every :meth:`add`: at most ``capacity`` rows, and at most
    ``max_bytes`` bytes of kept rows (the :attr:`nbytes` of the CSR arrays, labels and
    handles). The byte bound works in two steps. Before the rows of a chunk are offered,
    the selection's row capacity is lowered to what ``max_bytes`` holds at the mean size
    of the rows offered so far, so that rows enter through the reservoir's replacement
    rule rather than by filling space; if the rows kept are larger than the mean, random
    rows are then dropped (from the classes with the most rows, for
    ``"class_balanced"``) until the bytes fit. A random subset of a uniform sample is
    still a uniform sample, so both steps keep the selection's guarantees.

    Parameters
    ----------
    capacity : int
        Most rows kept.
    strategy : {"reservoir", "class_balanced"}
        Selection rule.
    n_features : int
        Number of columns of the rows.
    dtype : torch.dtype
        dtype of the stored values.
    device : torch.device
        Where :meth:`sample` puts its rows (the rows are stored on the CPU).
    max_bytes : int, default=64 MiB
        Most bytes kept.
    select : ReplayMemory, default=None
        The selection of row handles (for rows of several tasks,
        :class:`~skocl._tasks.TaskReplayMemory`); a ``ReplayMemory`` of ``strategy``
        when None.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, torch
    >>> from skocl._sparse_replay import SparseReplayMemory
    >>> mem = SparseReplayMemory(100, "class_balanced", 2**20, torch.float32, "cpu")
    >>> rng = np.random.RandomState(0)
    >>> X = sp.csr_matrix((rng.rand(500 * 20), rng.randint(2**20, size=500 * 20),
    ...                    np.arange(0, 500 * 20 + 1, 20)), shape=(500, 2**20))
    >>> y = torch.from_numpy(np.arange(500) % 4)
    >>> mem.add(X, y, torch.Generator().manual_seed(0))
    >>> len(mem), torch.bincount(mem.y).tolist()
    (100, [25, 25, 25, 25])
    >>> Xm, ym = mem.sample(8, torch.Generator().manual_seed(1))
    >>> Xm.shape, ym.shape
    ((8, 1048576), torch.Size([8]))
    """

    def __init__(
        self,
        capacity: int,
        strategy: str,
        n_features: int,
        dtype: torch.dtype,
        device,
        max_bytes: int = DEFAULT_MAX_BYTES,
        select: ReplayMemory | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}.")
        self.max_bytes, self.device = int(max_bytes), torch.device(device)
        if select is None:
            select = ReplayMemory(capacity, strategy, 1, torch.long, torch.device("cpu"))
        self._select = select
        self.max_rows = int(capacity)
        self.rows = SparseRows(
            torch.zeros(1, dtype=torch.long),
            torch.empty(0, dtype=torch.long),
            torch.empty(0, dtype=dtype),
            n_features,
        )
        self.ids = torch.empty(0, dtype=torch.long)  # handle of each kept row, ascending
        self.next_id = 0
        self.offered_rows = self.offered_bytes = 0
        self._columns = None

    # ------------------------------------------------------------- selection settings
    @property
    def capacity(self) -> int:
        return self.max_rows

    @capacity.setter
    def capacity(self, value: int) -> None:
        self.max_rows = int(value)

    @property
    def strategy(self) -> str:
        return self._select.strategy

    @strategy.setter
    def strategy(self, value: str) -> None:
        self._select.strategy = value

    @property
    def y(self) -> torch.Tensor:
        """Class index of each kept row, in the order of :attr:`rows`."""
        return self._select.state_dict()["y"][self._order()]

    @property
    def seen(self) -> torch.Tensor:
        """Rows seen per class index."""
        return self._select.seen

    @seen.setter
    def seen(self, value: torch.Tensor) -> None:
        self._select.seen = value

    @property
    def parts(self) -> tuple:
        """Inner objects whose attributes a checkpoint keeps too (the selection, whose
        in-place writes it records as well)."""
        return (self._select,)

    def columns(self) -> np.ndarray:
        """The distinct columns of the kept rows (computed once per change of them)."""
        if self._columns is None or self._columns[0] is not self.rows.indices:
            seen = np.zeros(self.rows.n_features, dtype=bool)
            seen[self.rows.indices.cpu().numpy()] = True
            self._columns = (self.rows.indices, np.flatnonzero(seen))
        return self._columns[1]

    @property
    def nbytes(self) -> int:
        """Bytes held: CSR arrays, labels and handles."""
        return self.rows.nbytes + 2 * 8 * len(self)

    def __len__(self) -> int:
        return len(self._select)

    # --------------------------------------------------------------------- replay
    def sample(self, k: int, gen: torch.Generator) -> tuple[SparseRows, torch.Tensor]:
        """``k`` rows drawn uniformly with replacement, on :attr:`device`."""
        handles, y = self._select.sample(k, gen)
        pos = torch.searchsorted(self.ids, handles[:, 0])
        return self.rows.take(pos).to(self.device), y.to(self.device)

    def replays(self, sizes: list[int], gen: torch.Generator, share: float = 1.0) -> list:
        """The replayed rows ``(X, y)`` that join trunk mini-batches of ``sizes`` rows,
        drawn now, a draw per mini-batch: as many as it has times ``share`` (rounded up;
        at most the memory's size)."""
        return [self.sample(c, gen) for c in replay_counts(sizes, len(self), share)]

    def join_batch(self, X: SparseRows, y: torch.Tensor, w: torch.Tensor | None, replayed):
        """A trunk mini-batch ``(X, y, w)`` joined by its ``replayed`` rows (one of
        :meth:`replays`), each weighing the batch's mean weight (``w`` None: all weigh
        one)."""
        Xm, ym = replayed
        if w is not None:
            w = torch.cat([w, w.new_full((len(ym),), float(w.mean()))])
        return SparseRows.cat([X, Xm.to(X.device, X.dtype)]), torch.cat([y, ym]), w

    # ----------------------------------------------------------------- offering
    def offer(self, rows, batch_size: int, gen: torch.Generator, logits=None) -> None:
        """Offer every row of ``rows`` (anything with a sparse ``X``, scipy or
        :class:`SparseRows`, and class indices ``y``), ``FORWARD_ROWS`` rows at a time as
        the dense memory offers them (each offer rebuilds the kept rows once; offering a
        chunk in mini-batches rebuilt them once per mini-batch). ``batch_size`` and
        ``logits`` are accepted for the memories' common signature: a sparse memory
        keeps no logits, so ``logits`` must be None."""
        if logits is not None:
            raise ValueError("a sparse replay memory keeps no logits (logit_replay)")
        X, step = rows.X, FORWARD_ROWS
        for start in range(0, len(rows.y), step):
            sl = slice(start, start + step)
            part = (
                csr_rows(X, sl, dtype=self.rows.dtype)
                if sp.issparse(X)
                else X.take(torch.arange(len(rows.y))[sl])
            )
            self.add(part, rows.y[sl], gen)

    def add(self, X, y: torch.Tensor, gen: torch.Generator) -> None:
        """Offer rows (:class:`SparseRows` or a scipy sparse matrix) with their class
        indices ``y`` to the memory."""
        X = csr_rows(X, dtype=self.rows.dtype) if sp.issparse(X) else X
        if X.n_features != self.rows.n_features:
            raise ValueError(
                f"The replay memory holds rows of {self.rows.n_features} features; got "
                f"rows of shape {X.shape}."
            )
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels.")
        X = X.to("cpu", self.rows.dtype)
        y = y.cpu()
        if not len(y):
            return
        sizes = X.row_nbytes() + 16  # the label and the handle
        self.offered_rows += len(y)
        self.offered_bytes += int(sizes.sum())
        mean = self.offered_bytes / self.offered_rows
        self._select.capacity = min(self.max_rows, int(self.max_bytes // mean))
        handles = torch.arange(self.next_id, self.next_id + len(y))
        self.next_id += len(y)
        self._select.add(handles[:, None], y, gen)
        held = self._select.state_dict()["X"][:, 0]
        keep = torch.isin(self.ids, held)
        new = torch.isin(handles, held)
        self.rows = SparseRows.cat(
            [self.rows.take(torch.nonzero(keep).flatten()), X.take(torch.nonzero(new).flatten())]
        )
        self.ids = torch.cat([self.ids[keep], handles[new]])
        if self.nbytes > self.max_bytes:
            self._evict(gen)

    def _evict(self, gen: torch.Generator) -> None:
        """Drop random rows (from the largest classes first, for class_balanced) until
        the bytes fit."""
        state = self._select.state_dict()
        handles, y = state["X"][:, 0], state["y"]
        n = len(y)
        pos = torch.searchsorted(self.ids, handles)
        sizes = self.rows.row_nbytes()[pos] + 16
        order = torch.randperm(n, generator=gen)
        if self.strategy == "class_balanced":
            # Rank of each row within its class in a random order; keeping rows in order of
            # rank keeps the classes as even as the bytes allow.
            rank = torch.empty(n, dtype=torch.long)
            ys = y[order]
            by_class = torch.argsort(ys, stable=True)
            counts = torch.bincount(ys)
            starts = torch.cumsum(counts, 0) - counts
            rank[order[by_class]] = torch.arange(n) - starts[ys[by_class]]
            order = order[torch.argsort(rank[order], stable=True)]
        fits = torch.cumsum(sizes[order], 0) <= self.max_bytes - self.rows.indptr.element_size()
        keep_slots = torch.sort(order[fits]).values
        state["X"], state["y"] = state["X"][keep_slots], y[keep_slots]
        self._select.load_state_dict(state)
        self._collect()

    def _collect(self) -> None:
        """Drop the stored rows whose handles the selection no longer holds."""
        keep = torch.isin(self.ids, self._select.state_dict()["X"][:, 0])
        if bool(keep.all()):
            return
        self.rows = self.rows.take(torch.nonzero(keep).flatten())
        self.ids = self.ids[keep]

    def _order(self) -> torch.Tensor:
        """Selection slot of each stored row (stored rows are in handle order)."""
        return torch.argsort(self._select.state_dict()["X"][:, 0])

    # ------------------------------------------------------------- class changes
    def remap(self, positions) -> None:
        """Follow a grown label set: class ``i`` becomes ``positions[i]``."""
        self._select.remap(positions)

    def grow(self, growth) -> None:
        """Follow the head's growth to a larger label set."""
        self.remap(growth.label_map)

    def add_task(self) -> None:
        """A new task (rows of several tasks): every kept row lacks its label."""
        self._select.add_task()

    def drop_classes(self, classes) -> None:
        """Forget the rows of these class indices (their counts start again)."""
        self._select.drop_classes(classes)
        self._collect()

    def forget_contradicted(self, X, y_idx) -> bool:
        """After a drift, drop the rows of the chunk's classes when the chunk's inputs
        look like the memory's; returns whether they did (the concept changed).

        The rule of :meth:`skocl._continual.ReplayMemory.forget_contradicted` (per
        column, :math:`z = |\bar x_{chunk} - \bar x_{memory}| / se`; inputs alike
        when the mean of :math:`z` is below ``SAME_INPUTS_Z``) in a form that works for
        sparse rows: the mean runs over the columns non-zero in the chunk or the memory,
        weighted by their share of the absolute values (half from the chunk, half from
        the memory). An unweighted mean over mostly-empty columns, each seen in a row or
        two, sits near 1 whatever the inputs; weighting by mass lets a new vocabulary,
        whose columns carry most of the chunk's values, show.
        """
        if not len(self):
            return False
        Xc = X.to_scipy() if isinstance(X, SparseRows) else sp.csr_matrix(X)
        Xm = self.rows.to_scipy()
        cols = np.union1d(np.unique(Xc.indices), np.unique(Xm.indices))
        if not len(cols) or not Xc.shape[0]:
            return False
        Xc, Xm = Xc[:, cols].astype(np.float64), Xm[:, cols].astype(np.float64)

        def moments(A):
            mean = np.asarray(A.mean(axis=0)).ravel()
            var = np.asarray(A.multiply(A).mean(axis=0)).ravel() - mean**2
            mass = np.asarray(abs(A).sum(axis=0)).ravel()
            return mean, np.maximum(var, 0), mass / max(mass.sum(), 1e-300)

        (c_mean, c_var, c_mass), (m_mean, m_var, m_mass) = moments(Xc), moments(Xm)
        var = c_var / Xc.shape[0] + m_var / Xm.shape[0]
        diff = np.abs(c_mean - m_mean)
        z = np.divide(diff, np.sqrt(var), out=np.zeros_like(diff), where=var > 0)
        z[(var == 0) & (diff > 0)] = np.inf
        if np.average(np.minimum(z, 1e6), weights=(c_mass + m_mass) / 2) < SAME_INPUTS_Z:
            self.drop_classes(np.unique(y_idx))
            return True
        return False

    def clear(self) -> None:
        self._select.clear()
        self._collect()

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "select": self._select.state_dict(),
            "indptr": self.rows.indptr.clone(),
            "indices": self.rows.indices.clone(),
            "values": self.rows.values.clone(),
            "n_features": self.rows.n_features,
            "ids": self.ids.clone(),
            "next_id": self.next_id,
            "offered": (self.offered_rows, self.offered_bytes),
            "max_rows": self.max_rows,
            "max_bytes": self.max_bytes,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["n_features"] != self.rows.n_features:
            raise ValueError(
                f"This replay memory holds rows of {self.rows.n_features} features; the "
                f"state has {state['n_features']}."
            )
        n_rows, n_ids = len(state["indptr"]) - 1, len(state["ids"])
        if n_rows != n_ids or n_rows != len(state["select"]["y"]):
            raise ValueError(
                f"Inconsistent replay memory state: {n_rows} rows, {n_ids} handles, "
                f"{len(state['select']['y'])} labels."
            )
        self._select.load_state_dict(state["select"])
        self.rows = SparseRows(
            state["indptr"].clone(),
            state["indices"].clone(),
            state["values"].to(self.rows.dtype),
            self.rows.n_features,
        )
        self.ids = state["ids"].clone()
        self.next_id = int(state["next_id"])
        self.offered_rows, self.offered_bytes = (int(v) for v in state["offered"])
        self.max_rows, self.max_bytes = int(state["max_rows"]), int(state["max_bytes"])
