"""Lazy Adam: Adam on the rows a sparse gradient touches, plain Adam on dense gradients.

With a row-sparse gradient (``SparseLinear``'s weight, ``nn.Embedding(sparse=True)``)
a step reads and writes only the rows present in the gradient, so its cost follows the
non-zeros of the batch, not the size of the layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class LazyAdam(torch.optim.Optimizer):
    r"""Adam that updates only the rows present in a sparse gradient.

    Dense gradients get Adam exactly as ``torch.optim.Adam`` computes it (with
    ``weight_decay`` added to the gradient, Adam's L2 form). A sparse COO gradient
    (duplicate rows are summed first) updates, for each row :math:`r` it holds, with the
    parameter's step count :math:`t`:

    .. math::

        g_r &\leftarrow g_r + \lambda \theta_r \\
        m_r &\leftarrow \beta_1 m_r + (1 - \beta_1) g_r \\
        v_r &\leftarrow \beta_2 v_r + (1 - \beta_2) g_r^2 \\
        \theta_r &\leftarrow \theta_r - \frac{\eta}{1 - \beta_1^t}
            \frac{m_r}{\sqrt{v_r / (1 - \beta_2^t)} + \epsilon}

    and leaves every other row, and its moments, bit-identical. This is
    ``torch.optim.SparseAdam``'s lazy rule (with the bias corrections and
    :math:`\epsilon` placed as ``torch.optim.Adam`` places them, and an optional L2
    weight decay on the touched rows).

    Parameters
    ----------
    params : iterable of torch.nn.Parameter or dicts
        Parameters (or parameter groups) to optimize.
    lr : float, default=1e-3
        Learning rate :math:`\eta`.
    betas : tuple of float, default=(0.9, 0.999)
        :math:`\beta_1, \beta_2`.
    eps : float, default=1e-8
        :math:`\epsilon`.
    weight_decay : float, default=0.0
        L2 penalty :math:`\lambda`, applied only to the rows a step touches.

    Notes
    -----
    How lazy Adam differs from dense Adam on the same loss: dense Adam sees a zero
    gradient on the rows a batch does not touch, decays their moments and keeps moving
    them by their momentum; lazy Adam neither reads nor writes them, so a row moves only
    on steps whose batch holds its feature, and its moments decay only then. The bias
    corrections use the parameter's step count, not the row's. When every row is in
    every batch (a dense-looking sparse gradient) the two coincide.

    A parameter whose first gradient is sparse keeps both moments of a row side by side,
    in ``state["moments"]`` of shape ``(n_rows, 2, *row_shape)``, so that a step reads
    and writes one row of state per feature instead of one row of each of two tensors
    (it halves the optimizer's scattered memory traffic); a dense parameter keeps
    ``state["exp_avg"]`` and ``state["exp_avg_sq"]`` as ``torch.optim.Adam`` does.

    Examples
    --------
    >>> import torch
    >>> from skocl.sparse import LazyAdam
    >>> emb = torch.nn.Embedding(10, 3, sparse=True)
    >>> opt = LazyAdam(emb.parameters(), lr=0.1)
    >>> before = emb.weight.detach().clone()
    >>> emb(torch.tensor([1, 4])).sum().backward()
    >>> opt.step()
    >>> changed = (emb.weight != before).any(1).nonzero().flatten().tolist()
    >>> changed
    [1, 4]
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0:
            raise ValueError(f"LazyAdam: lr must be >= 0, got {lr}.")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"LazyAdam: betas must be in [0, 1), got {betas}.")
        if not eps >= 0:
            raise ValueError(f"LazyAdam: eps must be >= 0, got {eps}.")
        if not weight_decay >= 0:
            raise ValueError(f"LazyAdam: weight_decay must be >= 0, got {weight_decay}.")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    if p.grad.is_sparse:
                        # Both moments of a row side by side: a step reads and writes one
                        # row of this table per feature, not one row of each of two.
                        state["moments"] = _zeros(p, (p.shape[0], 2, *p.shape[1:]))
                    else:
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                if p.grad.is_sparse:
                    _lazy_step(p, p.grad, state, group)
                else:
                    _dense_step(p, p.grad, state, group)
        return loss


def _zeros(p: torch.Tensor, shape: tuple) -> torch.Tensor:
    """Zeros shaped ``shape`` like ``p``. On the CPU they come from numpy's zeroed
    allocation (``calloc``), whose pages the system maps only when first written: the
    moments of a wide layer cost memory and time only for the rows that steps touch,
    not for all of them up front (``torch.zeros`` writes every byte)."""
    if p.device.type != "cpu" or p.dtype not in _NUMPY_DTYPES:
        return p.new_zeros(shape)
    return torch.from_numpy(np.zeros(shape, dtype=_NUMPY_DTYPES[p.dtype]))


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def _corrections(state: dict, group: dict) -> tuple[float, float]:
    t = float(state["step"])
    beta1, beta2 = group["betas"]
    return 1 - beta1**t, math.sqrt(1 - beta2**t)


def _moments(state: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the first and second moments, however they are stored."""
    if "moments" in state:
        return state["moments"][:, 0], state["moments"][:, 1]
    return state["exp_avg"], state["exp_avg_sq"]


def _dense_step(p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
    beta1, beta2 = group["betas"]
    if group["weight_decay"]:
        grad = grad.add(p, alpha=group["weight_decay"])
    m, v = _moments(state)
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bc1, bc2_sqrt = _corrections(state, group)
    denom = (v.sqrt() / bc2_sqrt).add_(group["eps"])
    p.addcdiv_(m, denom, value=-group["lr"] / bc1)


def _lazy_step(p: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
    if grad.sparse_dim() != 1:
        raise ValueError(
            "LazyAdam handles sparse gradients whose rows (first dimension) are sparse, got "
            f"one with {grad.sparse_dim()} sparse dimensions for a parameter of shape "
            f"{tuple(p.shape)}."
        )
    beta1, beta2 = group["betas"]
    idx, vals = grad._indices()[0], grad._values()
    if not len(idx):
        return
    # Sum the repeated rows of an uncoalesced gradient (one entry per non-zero of the
    # batch); cheaper than coalesce(), which sorts the values too.
    rows, inverse = torch.unique(idx, return_inverse=True)
    g = vals.new_zeros((len(rows), *vals.shape[1:])).index_add_(0, inverse, vals)
    theta = p.index_select(0, rows)
    if group["weight_decay"]:
        g.add_(theta, alpha=group["weight_decay"])
    if "moments" in state:
        mv = state["moments"].index_select(0, rows)
        m, v = mv[:, 0], mv[:, 1]
    else:
        m, v = state["exp_avg"].index_select(0, rows), state["exp_avg_sq"].index_select(0, rows)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    if "moments" in state:
        state["moments"].index_copy_(0, rows, mv)
    else:
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
    bc1, bc2_sqrt = _corrections(state, group)
    denom = v.sqrt().div_(bc2_sqrt).add_(group["eps"])
    p.index_copy_(0, rows, theta.addcdiv_(m, denom, value=-group["lr"] / bc1))
