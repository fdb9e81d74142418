"""Sparse, wide input kept sparse: CSR row batches and the first layer that reads them.

A scipy CSR chunk becomes :class:`SparseRows` (its ``indptr``, ``indices`` and
``values`` as torch tensors, never densified) with :func:`csr_rows`;
:class:`SparseLinear` maps such a batch to ``width`` features with
``torch.nn.functional.embedding_bag``, equal to ``nn.Linear`` on the dense rows, and
gives its weight a row-sparse gradient: only the rows of the features present in the
batch. :class:`skocl.sparse.LazyAdam` updates only those rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

_FLOAT_DTYPES = (torch.float32, torch.float64)


class SparseRows:
    """A batch of sparse rows in CSR form, held as torch tensors.

    Row ``i`` has the values ``values[indptr[i]:indptr[i + 1]]`` at the columns
    ``indices[indptr[i]:indptr[i + 1]]``; repeated columns in a row add up, as in
    scipy. Nothing here densifies: memory and work are proportional to the non-zeros.

    Parameters
    ----------
    indptr : torch.Tensor of shape (n_rows + 1,), int64
        Row pointers, starting at 0 and non-decreasing.
    indices : torch.Tensor of shape (nnz,), int64
        Column of each stored value, in ``[0, n_features)``.
    values : torch.Tensor of shape (nnz,), float32 or float64
        The stored values.
    n_features : int
        Number of columns.

    Examples
    --------
    >>> import scipy.sparse as sp, torch
    >>> from skocl.sparse import csr_rows
    >>> X = sp.csr_matrix([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
    >>> batch = csr_rows(X, dtype=torch.float64)
    >>> batch.shape, batch.nnz
    ((2, 3), 3)
    >>> batch.to_dense()
    tensor([[0., 2., 0.],
            [1., 0., 3.]], dtype=torch.float64)
    """

    __slots__ = ("indptr", "indices", "values", "n_features")

    def __init__(
        self,
        indptr: torch.Tensor,
        indices: torch.Tensor,
        values: torch.Tensor,
        n_features: int,
    ) -> None:
        self.indptr, self.indices, self.values = indptr, indices, values
        self.n_features = int(n_features)

    def __len__(self) -> int:
        return self.indptr.shape[0] - 1

    def __repr__(self) -> str:
        return (
            f"SparseRows(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, "
            f"device={self.device})"
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.n_features)

    @property
    def nnz(self) -> int:
        return self.indices.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the three tensors."""
        return sum(t.element_size() * t.numel() for t in (self.indptr, self.indices, self.values))

    def row_nbytes(self) -> torch.Tensor:
        """Bytes each row holds: its non-zeros (column and value) and its row pointer."""
        per_nnz = self.indices.element_size() + self.values.element_size()
        return (self.indptr[1:] - self.indptr[:-1]).cpu() * per_nnz + self.indptr.element_size()

    def to(
        self, device=None, dtype: torch.dtype | None = None, non_blocking: bool = False
    ) -> SparseRows:
        """The same rows on ``device`` with values of ``dtype`` (self when unchanged),
        copied as ``torch.Tensor.to`` copies (``non_blocking`` alike)."""
        if (device is None or torch.device(device) == self.device) and (
            dtype is None or dtype == self.dtype
        ):
            return self
        return SparseRows(
            self.indptr.to(device, non_blocking=non_blocking),
            self.indices.to(device, non_blocking=non_blocking),
            self.values.to(
                device, dtype if dtype is not None else self.dtype, non_blocking=non_blocking
            ),
            self.n_features,
        )

    def to_dense(self) -> torch.Tensor:
        """The rows as a dense ``(n_rows, n_features)`` tensor (for tests and small
        batches)."""
        n = len(self)
        rows = torch.repeat_interleave(
            torch.arange(n, device=self.device), self.indptr[1:] - self.indptr[:-1]
        )
        dense = torch.zeros((n, self.n_features), dtype=self.dtype, device=self.device)
        return dense.index_put_((rows, self.indices), self.values, accumulate=True)

    def to_scipy(self) -> sp.csr_matrix:
        """The rows as a scipy CSR matrix (on the CPU)."""
        return sp.csr_matrix(
            (self.values.cpu().numpy(), self.indices.cpu().numpy(), self.indptr.cpu().numpy()),
            shape=self.shape,
        )

    def take(self, rows: torch.Tensor) -> SparseRows:
        """The rows at positions ``rows`` (an int64 tensor; repeats allowed), in that
        order."""
        rows = rows.to(self.indptr.device)
        # index_select rather than t[rows] throughout: torch's advanced indexing on the
        # CPU is about four times slower for the same gather.
        starts = self.indptr.index_select(0, rows)
        lengths = self.indptr.index_select(0, rows + 1) - starts
        indptr = torch.zeros(len(rows) + 1, dtype=self.indptr.dtype, device=self.indptr.device)
        torch.cumsum(lengths, 0, out=indptr[1:])
        total = int(indptr[-1])
        # Position k of the result reads source position starts[row(k)] + (k - indptr[row(k)]).
        shift = torch.repeat_interleave(starts - indptr[:-1], lengths, output_size=total)
        src = torch.arange(total, device=shift.device) + shift
        return SparseRows(
            indptr, self.indices.index_select(0, src), self.values.index_select(0, src),
            self.n_features,
        )  # fmt: skip

    @staticmethod
    def cat(parts: Sequence[SparseRows]) -> SparseRows:
        """The rows of ``parts`` one after the other (same ``n_features``, dtype and
        device)."""
        if not parts:
            raise ValueError("SparseRows.cat needs at least one batch.")
        widths = {p.n_features for p in parts}
        if len(widths) > 1:
            raise ValueError(
                f"SparseRows.cat: batches have different numbers of features {sorted(widths)}."
            )
        if len(parts) == 1:
            return parts[0]
        offsets = [0]
        for p in parts[:-1]:
            offsets.append(offsets[-1] + p.nnz)
        indptr = torch.cat(
            [parts[0].indptr[:1]] + [p.indptr[1:] + off for p, off in zip(parts, offsets)]
        )
        return SparseRows(
            indptr,
            torch.cat([p.indices for p in parts]),
            torch.cat([p.values for p in parts]),
            parts[0].n_features,
        )

    @classmethod
    def from_torch(cls, x: torch.Tensor) -> SparseRows:
        """Rows of a 2-D torch tensor: sparse CSR or COO, or dense (its non-zeros)."""
        if x.dim() != 2:
            raise ValueError(
                f"Expected a 2-D batch of rows, got a tensor of shape {tuple(x.shape)}."
            )
        if x.layout == torch.sparse_csr:
            return cls(x.crow_indices().long(), x.col_indices().long(), x.values(), x.shape[1])
        if x.layout == torch.strided:
            x = x.to_sparse()
        elif x.layout != torch.sparse_coo:
            raise TypeError(f"Unsupported tensor layout {x.layout}; use CSR, COO or dense.")
        # A coalesced COO tensor lists its non-zeros in row-major order: CSR but for indptr.
        x = x.coalesce()
        rows, cols = x.indices()
        indptr = torch.zeros(x.shape[0] + 1, dtype=torch.long, device=x.device)
        torch.cumsum(torch.bincount(rows, minlength=x.shape[0]), 0, out=indptr[1:])
        return cls(indptr, cols, x.values(), x.shape[1])


def csr_rows(
    X,
    rows: slice | np.ndarray | torch.Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SparseRows:
    """The rows ``rows`` of a scipy sparse matrix as :class:`SparseRows`, without
    densifying.

    Parameters
    ----------
    X : scipy sparse matrix or array of shape (n_samples, n_features)
        CSR is used as is; another sparse format is converted to CSR first (a copy).
    rows : slice, array of int or None, default=None
        Rows to take, in order; all when None.
    dtype : {torch.float32, torch.float64}, default=torch.float32
        dtype of the values.
    device : torch.device, str or None, default=None
        Where the tensors go; the CPU when None.

    Returns
    -------
    SparseRows

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from skocl.sparse import csr_rows
    >>> X = sp.csr_matrix(np.eye(4))
    >>> csr_rows(X, slice(1, 3)).to_dense()
    tensor([[0., 1., 0., 0.],
            [0., 0., 1., 0.]])
    """
    if not sp.issparse(X):
        raise TypeError(f"csr_rows expects a scipy sparse matrix, got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(f"csr_rows expects a 2-D matrix, got shape {X.shape}.")
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}.")
    X = X.tocsr() if X.format != "csr" else X
    if rows is not None:
        if isinstance(rows, torch.Tensor):
            rows = rows.cpu().numpy()
        X = X[rows]
    indptr = torch.from_numpy(X.indptr.astype(np.int64, copy=False))
    indices = torch.from_numpy(X.indices.astype(np.int64, copy=False))
    values = torch.from_numpy(
        np.ascontiguousarray(X.data, dtype=np.float32 if dtype == torch.float32 else np.float64)
    )
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= X.shape[1]):
        raise ValueError(
            f"X has a column index outside [0, {X.shape[1]}): its CSR structure is broken."
        )
    batch = SparseRows(indptr, indices, values, X.shape[1])
    return batch if device is None else batch.to(device)


class SparseLinear(nn.Module):
    r"""A linear layer for wide sparse rows: ``y = x W + b``, computed from the
    non-zeros only.

    Equal to ``nn.Linear(n_features, width)`` on the densified rows, with the weight
    stored transposed, one row per input feature (``weight`` has shape
    ``(n_features, width)``, ``nn.Linear``'s is ``(width, n_features)``), because the
    gradient of this layout is row-sparse: with ``sparse_grad=True`` the weight's
    gradient is a sparse COO tensor holding only the rows of the features present in
    the batch, so an optimizer that reads it (:class:`skocl.sparse.LazyAdam`,
    ``torch.optim.SparseAdam``) touches only those rows.

    Parameters
    ----------
    n_features : int
        Number of input features (columns of the sparse rows).
    width : int
        Number of outputs.
    bias : bool, default=True
        Whether to add a learned bias.
    sparse_grad : bool, default=True
        Give the weight a sparse gradient; False gives a dense one, for optimizers that
        want dense gradients (at the cost of a dense ``n_features x width`` gradient).
    device, dtype
        Where the parameters live and their dtype, as in ``nn.Linear``.

    Attributes
    ----------
    weight : torch.nn.Parameter of shape (n_features, width)
    bias : torch.nn.Parameter of shape (width,) or None

    Notes
    -----
    The forward pass accepts :class:`SparseRows` (see :func:`csr_rows`), a torch
    sparse CSR or COO tensor, or a dense tensor (converted to CSR first, so the
    gradient is row-sparse whatever the input). It is
    ``embedding_bag(indices, weight, offsets=indptr, per_sample_weights=values,
    mode="sum")``: row :math:`i` gets :math:`\sum_{k} v_k W_{j_k}` over its non-zeros
    :math:`(j_k, v_k)`. Initialisation is ``nn.Linear``'s:
    :math:`U(-1/\sqrt{n\_features}, 1/\sqrt{n\_features})` for weight and bias.

    Examples
    --------
    >>> import scipy.sparse as sp, torch
    >>> from skocl.sparse import SparseLinear, csr_rows
    >>> _ = torch.manual_seed(0)
    >>> layer = SparseLinear(2**20, 8)
    >>> X = sp.csr_matrix(([1.0, 0.5, 2.0], [3, 70_000, 1_000_000], [0, 2, 2, 3, 3]),
    ...                   shape=(4, 2**20))
    >>> out = layer(csr_rows(X))
    >>> out.shape
    torch.Size([4, 8])
    >>> out.sum().backward()
    >>> layer.weight.grad.is_sparse
    True
    >>> layer.weight.grad.coalesce().indices()[0].tolist()  # rows of the features present
    [3, 70000, 1000000]
    """

    def __init__(
        self,
        n_features: int,
        width: int,
        bias: bool = True,
        sparse_grad: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if int(n_features) < 1 or int(width) < 1:
            raise ValueError(
                f"n_features and width must be positive, got {n_features} and {width}."
            )
        kw = {"device": device, "dtype": dtype}
        self.n_features, self.width, self.sparse_grad = int(n_features), int(width), sparse_grad
        self.weight = nn.Parameter(torch.empty((self.n_features, self.width), **kw))
        self.bias = nn.Parameter(torch.empty(self.width, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.n_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x) -> torch.Tensor:
        if not isinstance(x, SparseRows):
            if not isinstance(x, torch.Tensor):
                raise TypeError(
                    f"SparseLinear takes SparseRows or a torch tensor, got {type(x).__name__}; "
                    "turn a scipy matrix into SparseRows with skocl.sparse.csr_rows."
                )
            x = SparseRows.from_torch(x)
        if x.n_features != self.n_features:
            raise ValueError(
                f"SparseLinear expects rows of {self.n_features} features, got a batch of "
                f"shape {x.shape}."
            )
        out = F.embedding_bag(
            x.indices,
            self.weight,
            x.indptr,
            mode="sum",
            sparse=self.sparse_grad,
            per_sample_weights=x.values.to(self.weight.dtype),
            include_last_offset=True,
        )
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"n_features={self.n_features}, width={self.width}, bias={self.bias is not None}, "
            f"sparse_grad={self.sparse_grad}"
        )
