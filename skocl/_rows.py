"""Labelled rows on their way to the network: host memory in, one device copy per use."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from ._sparse import SparseRows, csr_rows

# Rows pushed through the network at once when predicting or computing features; bounds
# the memory of a forward pass over a large X.
FORWARD_ROWS = 1 << 18
# Values of dense rows gathered at once into mini-batches (Rows.batches): 4 MiB of float32.
GATHER_ELEMENTS = 1 << 20


@dataclass
class Rows:
    """Labelled rows, ready for the network (the chunk of a ``partial_fit``, the
    training set of a ``fit``).

    ``X`` stays in host memory (a tensor, or a scipy CSR matrix); :meth:`take` copies
    the rows asked for to ``device``, so only the rows in use cross to a GPU. The first
    request for all rows (rows no more than a mini-batch, the head's features, the
    replay memory's offer) keeps its device copy for the later ones, so the rows cross
    once per use, not once per step. Labels ``y`` and weights ``w`` (None: all ones)
    are small and live on ``device``; ``labels`` is the host copy of ``y``. With
    ``sparse`` (a network that reads sparse rows) the rows of a CSR ``X`` come as
    :class:`~skocl.sparse.SparseRows`, never densified; otherwise they are densified a
    mini-batch at a time.
    """

    X: torch.Tensor | sp.csr_matrix
    y: torch.Tensor
    w: torch.Tensor | None
    dtype: torch.dtype
    device: torch.device
    labels: np.ndarray | None = None
    sparse: bool = False
    _whole: torch.Tensor | SparseRows | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.y.shape[0]

    def take(self, idx: torch.Tensor | slice | None) -> torch.Tensor | SparseRows:
        """Rows of X on ``device`` (all when ``idx`` is None; ``idx`` a CPU tensor or a
        slice)."""
        n = len(self)
        whole = idx is None or (isinstance(idx, slice) and idx.indices(n) == (0, n, 1))
        if self._whole is not None:
            if whole:
                return self._whole
            if isinstance(self._whole, SparseRows):
                return self._whole.take(torch.arange(n)[idx] if isinstance(idx, slice) else idx)
            if isinstance(idx, slice):
                return self._whole[idx]
            return self._whole.index_select(0, idx.to(self.device))
        X = self.X
        if whole:
            idx = slice(None)
        if self.sparse:
            rows = csr_rows(X, None if whole else idx, dtype=self.dtype, device=self.device)
            if whole:  # built once per use, on the host too
                self._whole = rows
            return rows
        if isinstance(X, torch.Tensor):
            # index_select: a gather of rows, several times faster than X[idx] on the CPU.
            if whole:
                rows = X
            else:
                rows = X[idx] if isinstance(idx, slice) else X.index_select(0, idx)
        else:
            rows = to_tensor(
                X[idx.numpy() if isinstance(idx, torch.Tensor) else idx].toarray(), self.dtype
            )
        if self.device.type == "cpu":
            return rows
        rows = rows.to(self.device, non_blocking=True)
        if whole:
            self._whole = rows
        return rows

    def slices(self, batch_size: int) -> Iterator[torch.Tensor]:
        """All rows on ``device`` in order, ``FORWARD_ROWS`` at a time (sparse rows to
        be densified ``batch_size`` at a time); rows that fit are one request for all."""
        step = FORWARD_ROWS if self.sparse or isinstance(self.X, torch.Tensor) else batch_size
        for s in range(0, len(self), step):
            yield self.take(slice(s, s + step))

    def batches(
        self, batch_size: int, gen: torch.Generator | None, replay=None
    ) -> Iterator[tuple]:
        """Mini-batches ``(X, y, w, replayed)`` in a random order (when ``gen`` is
        given), of the sizes :meth:`batch_sizes` gives. The order is drawn now, at the
        call, then ``replay`` (when given) is called with the mini-batches' sizes and
        returns the rows ``(X, y)`` that join each; ``replayed`` is a mini-batch's, still
        to join, or None: none, or joined here already (dense unweighted rows: each
        mini-batch is its rows followed by its replayed rows).

        Dense rows are gathered a block of mini-batches at a time (about
        ``GATHER_ELEMENTS`` values; the mini-batches are views of it): one copy instead
        of one per step, joined in one copy too. Sparse rows, and the rows of a CSR
        matrix densified for a dense network, are gathered a mini-batch at a time."""
        n = len(self)
        order = None
        if n > batch_size:
            order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
        replays = None if replay is None else replay(self.batch_sizes(batch_size))
        if order is None:
            return iter([(self.take(None), self.y, self.w, replays and replays[0])])
        return self._batches(order, batch_size, replays)

    def _batches(self, order: torch.Tensor, batch_size: int, replays) -> Iterator[tuple]:
        on_device = order.to(self.device)
        y = self.y.index_select(0, on_device)
        w = None if self.w is None else self.w.index_select(0, on_device)
        # Rows of a CSR X (sparse rows, or densified for a dense network) come a
        # mini-batch at a time: no dense copy of more.
        one_by_one = not isinstance(self.X if self._whole is None else self._whole, torch.Tensor)
        width = max(1, math.prod(self.X.shape[1:]))  # values per row
        per = batch_size * (1 if one_by_one else max(1, GATHER_ELEMENTS // (batch_size * width)))
        join = (
            replays is not None and w is None and not one_by_one
            and all(isinstance(Xm, torch.Tensor) for Xm, _ in replays)
        )  # fmt: skip
        for start in range(0, len(order), per):
            block = self.take(order[start : start + per])
            first = start // batch_size  # the block's first mini-batch
            if one_by_one:
                yield (
                    block, y[start : start + per], None if w is None else w[start : start + per],
                    None if replays is None else replays[first],
                )  # fmt: skip
                continue
            yb = y[start : start + len(block)]
            if join:
                last = first + -(-len(block) // batch_size)
                yield from _joined(block, yb, replays[first:last], batch_size)
                continue
            for s in range(0, len(block), batch_size):
                yield (
                    block[s : s + batch_size], yb[s : s + batch_size],
                    None if w is None else w[start + s : start + s + batch_size],
                    None if replays is None else replays[first + s // batch_size],
                )  # fmt: skip

    def batch_sizes(self, batch_size: int) -> list[int]:
        """The sizes of :meth:`batches`' mini-batches, in order."""
        n = len(self)
        if n <= batch_size:
            return [n]
        return [min(batch_size, n - s) for s in range(0, n, batch_size)]

    def subset(self, idx: torch.Tensor) -> Rows:
        """The rows ``idx`` (a CPU tensor of positions) as rows of their own, X still in
        host memory."""
        X = self.X
        X = X.index_select(0, idx) if isinstance(X, torch.Tensor) else X[idx.numpy()]
        on_device = idx.to(self.y.device)
        return Rows(
            X, self.y.index_select(0, on_device),
            None if self.w is None else self.w.index_select(0, on_device), self.dtype,
            self.device, None if self.labels is None else self.labels[idx.numpy()], self.sparse,
        )  # fmt: skip

    def sample(self, limit: int, gen) -> Rows:
        """All the rows, or of more than ``limit``, a uniform sample of ``limit`` (drawn
        without replacement from ``gen``; all of them again if the sample weighs
        nothing)."""
        if len(self) <= limit:
            return self
        sample = self.subset(torch.randperm(len(self), generator=gen)[:limit])
        return self if sample.w is not None and not bool(sample.w.sum() > 0) else sample

    def numpy(self) -> np.ndarray | sp.csr_matrix:
        """X as the host array (or CSR matrix) it was made from, without a copy."""
        return self.X if sp.issparse(self.X) else self.X.numpy()


def _joined(X: torch.Tensor, y: torch.Tensor, replays: list, size: int) -> Iterator[tuple]:
    """The mini-batches of a block (``X``, ``y``: consecutive mini-batches of ``size``
    rows but maybe the last) with their replayed rows ``replays[i]``: the full ones
    joined in one copy where their replays have one size (each mini-batch's rows, then
    its replayed rows), the others handed over to be joined."""
    k = len(replays)
    full, count = min(len(y) // size, k), len(replays[0][1])
    if any(len(ym) != count for _, ym in replays[:full]):
        full = 0  # replays of several sizes: joined one mini-batch at a time
    if full:
        Xj = _interleaved(X[: size * full], torch.cat([Xm for Xm, _ in replays[:full]]), full)
        yj = _interleaved(y[: size * full], torch.cat([ym for _, ym in replays[:full]]), full)
        step = size + count
        for i in range(full):
            yield Xj[i * step : (i + 1) * step], yj[i * step : (i + 1) * step], None, None
    for i in range(full, k):
        yield X[i * size : (i + 1) * size], y[i * size : (i + 1) * size], None, replays[i]


def _interleaved(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` equal parts of ``a`` and of ``b`` in turn: a's first, b's first, a's
    second..., in one copy."""
    tail = a.shape[1:]
    parts = [a.reshape(k, -1, *tail), b.reshape(k, -1, *tail)]
    return torch.cat(parts, dim=1).reshape(-1, *tail)


def to_tensor(
    X: np.ndarray, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """A dense numpy array as a tensor (on the CPU unless ``device`` is given);
    zero-copy when dtype and layout allow."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    if X.dtype != np_dtype or not X.flags.c_contiguous or not X.flags.writeable:
        X = np.array(X, dtype=np_dtype, order="C")
    t = torch.from_numpy(X)
    return t if device is None or device.type == "cpu" else t.to(device)


def make_rows(
    X, y_idx: np.ndarray, w: np.ndarray | None, dtype, device, sparse: bool = False
) -> Rows:
    """:class:`Rows` of a validated X (ndarray or CSR), label indices and weights; with
    ``sparse`` (a network that reads sparse rows) X is kept as a CSR matrix."""
    if sparse:
        Xt = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    else:
        Xt = X.tocsr() if sp.issparse(X) else to_tensor(X, dtype)
    yt = torch.from_numpy(np.asarray(y_idx, dtype=np.int64))
    wt = None if w is None else torch.from_numpy(np.asarray(w, dtype=np.float64)).to(dtype)
    if device.type != "cpu":
        yt = yt.to(device)
        wt = None if wt is None else wt.to(device)
    return Rows(Xt, yt, wt, dtype, device, np.asarray(y_idx), sparse)
