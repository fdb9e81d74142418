"""Gradient steps and passes: guarded steps, the per-call transaction, a training
epoch, the head's fine-tune on fixed features, and inference."""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import optimizer as _optim

from ._continual import batch_targets, logit_gaps
from ._mlp_grads import MLPGrads, PlainForward
from ._rows import FORWARD_ROWS, Rows
from ._sparse import SparseRows


def weighted_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor | None,
    mask: torch.Tensor | None = None,
    tasks=None,
) -> torch.Tensor:
    """Cross-entropy averaged over the batch, weighted by ``w`` when given. ``mask``
    (0 or -inf per class) is added to the logits: a class at -inf takes no part in the
    softmax, and its head row gets no gradient. With ``tasks`` (a
    :class:`~skocl._tasks.Tasks`; ``y`` of shape ``(n, n_tasks)``), the sum of the tasks'
    losses (:meth:`~skocl._tasks.Tasks.loss`)."""
    if tasks is not None:
        return tasks.loss(logits, y, w, mask)
    if mask is not None:
        logits = logits + mask
    if w is None:
        return F.cross_entropy(logits, y)
    return (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum()


def apply_step(
    optimizer,
    params: list[nn.Parameter],
    grads,
    loss: torch.Tensor | None = None,
    fused: FusedAdam | None = None,
    plain: bool = False,
) -> bool:
    """Step ``optimizer`` with ``grads`` unless the loss or a gradient is not finite;
    a skipped step leaves the weights as they were. Returns whether it was taken.
    ``fused``: the optimizer's :class:`FusedAdam`, resolved by a caller that steps
    several times; ``plain``: the caller's gradients are dense, contiguous and of the
    parameters' dtype, and its loss records no graph (the closed-form gradients), so
    none of that is checked again at each step.

    A finite gradient can still make a weight non-finite (a learning rate far too
    high): :class:`Transaction` catches that once per call rather than per step.
    """
    if plain:
        if not all_finite(grads if loss is None else [*grads, loss]):
            return False
        if fused is not None:
            fused.step(grads)
            return True
    elif not all_finite(grads if loss is None else [*grads, loss.detach()]):
        return False
    # torch's fused CPU Adam reads a gradient as if laid out like its parameter (torch
    # 2.13: a transposed gradient steps wrongly): hand it contiguous ones.
    grads = [
        g if g.layout != torch.strided or g.is_contiguous() else g.contiguous() for g in grads
    ]
    fused = fused or FusedAdam.of(optimizer, params)
    if fused is not None and fused(grads):
        return True
    # Other optimizers read the gradients from .grad, for this step only.
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    for p in params:
        p.grad = None
    return True


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value of ``tensors`` (dense, on one device) is finite, in one sync:
    the check of the kernel behind ``torch.amp.GradScaler``, over all tensors in one
    call (it also multiplies them by one, which changes no bit); else the sum's check
    (any inf or NaN makes the sum non-finite)."""
    if not any(t.is_sparse for t in tensors):
        device = tensors[0].device
        flags = _flags(device)
        found, one = flags[0], flags[1]
        try:
            if not flags[2]:  # a check found a non-finite value, or did not finish
                found.zero_()
            flags[2] = False
            torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, one)
            clean = flags[2] = not found.item()
            return clean
        except (RuntimeError, NotImplementedError):  # a torch or device without it
            pass
    total = 0.0
    for t in tensors:
        total = total + t.sum()
    return math.isfinite(float(total))


def _flags(device) -> list:
    """all_finite's kernel's ``found_inf`` and ``inv_scale`` on ``device``, for this
    thread, and whether ``found_inf`` is still zero: the kernel only ever sets it, so a
    check that found nothing leaves it ready for the next one (no tensor made per
    check, 4 of a 32-row ``partial_fit``'s checks)."""
    held = getattr(_FLAGS, "held", None)
    if held is None:
        held = _FLAGS.held = {}
    flags = held.get(device)
    if flags is None:
        flags = held[device] = [torch.zeros(1, device=device), torch.ones(1, device=device), True]
    return flags


# Per thread (threads may share a device): _flags's tensors per device.
_FLAGS = threading.local()


class FusedAdam:
    """The step of a fused ``Adam``/``AdamW`` whose one parameter group is ``params``,
    state built, no hooks: straight through the kernel that ``optimizer.step()`` ends
    in, with the same arguments, so the same bits (the wrapper's bookkeeping cost about
    50 µs a step, a third of a 32-row ``partial_fit``'s steps). :meth:`of` returns None
    for any other optimizer or state, and off the CPU (not measured there)."""

    def __init__(self, group: dict, states: list, decoupled: bool) -> None:
        self.group, self.decoupled = group, decoupled
        self.params = group["params"]
        self.counts = _shared_counts(states)
        self.steps = [st["step"] for st in states]
        self.exp_avgs = [st["exp_avg"] for st in states]
        self.exp_avg_sqs = [st["exp_avg_sq"] for st in states]

    @classmethod
    def of(cls, optimizer, params: list[nn.Parameter]) -> FusedAdam | None:
        if type(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
            return None
        if len(optimizer.param_groups) != 1 or _has_step_hooks(optimizer):
            return None
        group = optimizer.param_groups[0]
        if not group["fused"] or group["amsgrad"] or group["maximize"] or group["capturable"]:
            return None
        if group["differentiable"] or len(group["params"]) != len(params):
            return None
        if any(a is not b for a, b in zip(group["params"], params)):
            return None
        states = [optimizer.state.get(p) for p in params]
        if not all(states):
            return None
        if len({p.device for p in params}) != 1 or params[0].device.type != "cpu":
            return None
        decoupled = group.get("decoupled_weight_decay", type(optimizer) is torch.optim.AdamW)
        return cls(group, states, decoupled)

    def __call__(self, grads) -> bool:
        """One step with ``grads``; False, having done nothing, for sparse gradients or
        gradients of another dtype."""
        if any(g.is_sparse or g.dtype != p.dtype for p, g in zip(self.params, grads)):
            return False
        self.step(grads)
        return True

    def step(self, grads) -> None:
        """One step with dense gradients of the parameters' dtype."""
        # Every parameter's step count, in one operation (adding a tensor: a Python 1
        # would first be made one, 1.5 us more).
        self.counts.add_(_ONE)
        group = self.group
        adam_kernel(
            list(self.params), list(grads), self.exp_avgs, self.exp_avg_sqs, self.steps,
            group["lr"], group["betas"], group["weight_decay"], group["eps"], self.decoupled,
        )  # fmt: skip


# FusedAdam's step count increment (read only; the step counts are on the CPU).
_ONE = torch.tensor(1.0)


def _shared_counts(states: list) -> torch.Tensor:
    """One tensor whose elements are the Adam step counts of ``states`` (their
    ``"step"`` entries made views of it, the same values, if they are not already): a
    step advances them all in one ``add_`` rather than ``_foreach_add_`` over 0-d
    tensors (4 against 12 us on this machine), a quarter of the optimizer's time on a
    small mini-batch."""
    steps = [st["step"] for st in states]
    base = steps[0]._base
    if (
        base is not None and base.dim() == 1 and len(base) == len(steps)
        and all(s._base is base and s.storage_offset() == i for i, s in enumerate(steps))
    ):  # fmt: skip
        return base
    counts = torch.stack([s.detach() for s in steps])
    for i, st in enumerate(states):
        st["step"] = counts[i]
    return counts


def adam_kernel(params, grads, exp_avgs, exp_avg_sqs, steps, lr, betas, weight_decay, eps,
                decoupled: bool) -> None:  # fmt: skip
    """One Adam (``decoupled``: AdamW) step through torch's fused kernel, the one
    ``optimizer.step()`` of a fused Adam ends in, with step counts ``steps`` already
    advanced (no AMSGrad, no grad scaling)."""
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
    kernel(
        params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=lr,
        beta1=betas[0], beta2=betas[1], weight_decay=weight_decay, eps=eps, maximize=False,
        grad_scale=None, found_inf=None,
    )  # fmt: skip


def _has_step_hooks(optimizer) -> bool:
    """Whether step hooks are registered (on ``optimizer``, or on every optimizer)."""
    return bool(
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or _optim._global_optimizer_pre_hooks
        or _optim._global_optimizer_post_hooks
    )


class Saved:
    """A tensor's values as they were: all of them, or only its rows ``rows`` (the
    rows of a wide sparse layer that an update can change)."""

    def __init__(self, t: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        self.t, self.rows = t, rows
        # detach() keeps the copy out of autograd; no no_grad() needed (it costs more
        # than the clone of a small tensor, and a checkpoint makes one per parameter).
        # index_select, not t[rows]: advanced indexing of the rows of a wide table is
        # several times slower (3.0 ms against 0.35 ms for 17k rows of Adam's moments).
        self.values = t.detach().clone() if rows is None else t.detach().index_select(0, rows)

    @torch.no_grad()
    def restore(self) -> torch.Tensor:
        if self.rows is None:
            self.t.copy_(self.values)
        else:
            self.t.index_copy_(0, self.rows, self.values)
        return self.t


class Transaction:
    """Parameters as they were at the start of an update, put back by
    :meth:`rollback` if the update left a weight that is not finite.

    One copy per update, not per step, keeps the promise that weights never become NaN
    at the cost of one copy of the parameters (of a wide sparse layer, only the rows in
    ``stake``, those the update can change; copies in ``saved``, made since the
    parameters last changed, are reused). Rolling back also clears the optimizer
    state of those parameters (Adam's moments start afresh): the state that led to a
    non-finite weight is not worth keeping.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        optimizers,
        stake: dict | None = None,
        saved: dict | None = None,
    ) -> None:
        self.params = params
        self.optimizers = [opt for opt in optimizers if opt is not None]
        stake, saved = stake or {}, saved or {}
        self.weights = [saved.get(p) or Saved(p, stake.get(p)) for p in params]

    @torch.no_grad()
    def finite(self, head: nn.Module | None = None, feats: torch.Tensor | None = None) -> bool:
        """Whether every weight is finite and (given) so are ``head``'s outputs on
        ``feats``: finite weights can still give non-finite outputs (a huge step, a huge
        pull, an input far out of range). One check (:func:`all_finite`) for both,
        unless a bound on a linear head's outputs answers for them."""
        weights = [w.t if w.rows is None else w.t.index_select(0, w.rows) for w in self.weights]
        if head is None:
            return all_finite(weights)
        bound = _output_bound(head, feats) if len(feats) >= _BOUND_ROWS else None
        if bound is None:
            return all_finite([*weights, head(feats)])
        # A linear head's outputs are finite when a bound on them is: one pass over the
        # features (their extremes) instead of the head's forward.
        if not all_finite(weights):
            return False
        return bound.item() < _SAFE_BOUND or all_finite([head(feats)])

    @torch.no_grad()
    def rollback(self) -> None:
        for w in self.weights:
            w.restore()
            for opt in self.optimizers:
                opt.state.pop(w.t, None)


# Rows of features from which the bound is cheaper than the head's forward (45 against
# 51 us at 512 rows of 256 features, 24 against 16 at 64).
_BOUND_ROWS = 512
# Below this bound on |outputs| (float32's largest value over 3), a linear head's
# float32 outputs and their sums over at most 2**20 features stay finite.
_SAFE_BOUND = 1e38


def _output_bound(head: nn.Module, feats: torch.Tensor) -> torch.Tensor | None:
    """A bound on ``|head(feats)|`` for a hook-free ``nn.Linear`` head (with bias) on
    at most 2**20 dense features: ``max|feats| * max_i ||W_i||_1 + max|b|``, NaN or inf
    when a feature is; None for any other head."""
    if type(head) is not nn.Linear or head.bias is None or head._forward_hooks:
        return None
    if head._forward_pre_hooks or feats.layout != torch.strided or feats.shape[-1] > 1 << 20:
        return None
    if not feats.numel():
        return None
    lo, hi = torch.aminmax(feats)
    W, b = head.weight, head.bias
    return torch.maximum(-lo, hi) * W.abs().sum(1).max() + b.abs().max()


def gradient_step(loss: torch.Tensor, optimizer, params: list[nn.Parameter]) -> bool:
    """Differentiate ``loss`` with respect to ``params`` only and take a guarded step."""
    grads = torch.autograd.grad(loss, params, materialize_grads=True)
    return apply_step(optimizer, params, grads, loss)


def train_epoch(
    trunk: nn.Module,
    head: nn.Module,
    optimizer,
    params: list[nn.Parameter],
    rows: Rows,
    batch_size: int,
    gen: torch.Generator | None,
    *,
    memory=None,
    penalty=None,
    mask=None,
    tasks=None,
    logit_replay: float = 0.0,
) -> tuple[float, int, int]:
    """One pass over ``rows`` in mini-batches, each a step of ``optimizer`` on the loss
    of the whole network (only ``params`` move).

    With a non-empty replay ``memory``, each mini-batch is joined by as many rows drawn
    from it; a chunk of more rows than the memory holds draws as many as it holds, in
    all, spread over its mini-batches (each memory row about once a call). With
    ``logit_replay`` and logits kept in the memory (``memory.Z``), ``logit_replay``
    times the mean squared gap between the replayed rows' logits and their kept ones
    joins the loss (dark experience replay; :func:`~skocl._continual.logit_gaps`).
    ``penalty(params, grads)`` may adjust the gradients (L2-SP, EWC) before the step;
    ``mask`` leaves classes out of the loss and ``tasks`` makes it the sum of several
    tasks' (:func:`weighted_loss`).

    Returns the weighted mean loss of the steps taken, the number of steps taken and
    the number skipped.
    """
    total, weight, taken, skipped = 0.0, 0.0, 0, 0
    # The default network's gradients in closed form: autograd's, less its overhead.
    closed = MLPGrads.of(trunk, head, params) if tasks is None else None
    fused = FusedAdam.of(optimizer, params)
    share = 1.0 if memory is None or len(memory) >= len(rows) else len(memory) / len(rows)
    replay = None
    if memory is not None and len(memory):
        replay = functools.partial(memory.replays, gen=gen, share=share)
    sizes = rows.batch_sizes(batch_size)
    alpha = logit_replay if replay is not None and tasks is None else 0.0
    targets = None
    if alpha and getattr(memory, "Z", None) is not None:
        # The replayed rows' kept logits too (the same draws), and their targets for
        # all mini-batches at once; the rows join as they would without.
        kept = []

        def replay_kept(batch_sizes):
            drawn = replay(batch_sizes, targets=True)
            kept.extend(d[2] for d in drawn)
            return [d[:2] for d in drawn]

        batches = rows.batches(batch_size, gen, replay_kept)
        Z = kept[0] if len(kept) == 1 else torch.cat(kept)
        width = mask.shape[0] if mask is not None else getattr(head, "out_features", 0)
        targets = batch_targets(Z, mask, width, [len(z) for z in kept], alpha)
    else:
        batches = rows.batches(batch_size, gen, replay)
    for i, (Xb, yb, wb, replayed) in enumerate(batches):
        n = sizes[i] if wb is None else float(wb.sum())  # the chunk's rows in it
        if n == 0:
            continue
        if replayed is not None:
            Xb, yb, wb = memory.join_batch(Xb, yb, wb, replayed)
        kept_targets = None if targets is None else targets[i]
        if tasks is not None and not bool((yb >= 0).any()):
            continue  # no label in the batch: a zero gradient would still move Adam
        plain = closed is not None and Xb.layout == torch.strided
        if plain:
            loss, grads = closed(Xb, yb, wb, mask, kept_targets)
            plain = penalty is None  # a penalty's gradients are its own
        else:
            z = head(trunk(Xb))
            loss = weighted_loss(z, yb, wb, mask, tasks)
            if kept_targets is not None:
                T_t, counts_t, scale = kept_targets
                counts = None if counts_t is None else counts_t.t()
                gaps, _ = logit_gaps(z[len(z) - T_t.shape[1] :], (T_t.t(), counts))
                loss = loss + gaps.square().sum() * scale
            grads = torch.autograd.grad(loss, params, materialize_grads=True)
        if penalty is not None:
            grads = penalty(params, grads)
        if apply_step(optimizer, params, grads, loss, fused, plain=plain):
            total += loss.item() * n
            weight += n
            taken += 1
        else:
            skipped += 1
    return (total / weight if weight else float("nan")), taken, skipped


def fine_tune_head(
    head: nn.Module,
    optimizer,
    params: list[nn.Parameter],
    feats: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor | None,
    steps: int,
    mask: torch.Tensor | None = None,
) -> int:
    """``steps`` full-batch steps of ``optimizer`` on the head alone, on fixed features
    (``mask`` as in :func:`weighted_loss`).

    A plain ``nn.Linear`` head gets the closed-form cross-entropy gradient
    ``G = (softmax(z W^T + b) - onehot(y)) * w / sum(w)``, ``dW = G^T z``, ``db = sum G``,
    equal to autograd's but without its per-step overhead. Returns the number of steps
    skipped.
    """
    n = y.shape[0]
    scale = w / w.sum() if w is not None else feats.new_full((n,), 1.0 / n)
    skipped = 0
    W, b = getattr(head, "weight", None), getattr(head, "bias", None)
    closed_form = (
        type(head) is nn.Linear and len(params) == 2 and params[0] is W and params[1] is b
    )
    if closed_form:
        # Logits as classes by rows: softmax over a short first axis vectorises over the
        # rows, which torch's CPU softmax over a short last axis does not, and addmm
        # is faster in this layout too (379 against 460 us for 6,096 rows, 256
        # features, 4 classes; 664 against 1,174 with 10 classes).
        # softmax - onehot: -1 added at each row's label (the same bits as subtracting
        # the onehot, for less work).
        labels, minus_one = y[None, :], feats.new_full((1, n), -1.0)
        mask_t = None if mask is None else mask[:, None]
        fused = FusedAdam.of(optimizer, params)
        with torch.no_grad():
            # Views, made once: they see the steps' in-place updates of b.
            b_col, feats_t = b[:, None], feats.t()
            for _ in range(steps):
                z_t = torch.addmm(b_col, W, feats_t)
                G_t = torch.softmax(z_t if mask_t is None else z_t + mask_t, dim=0)
                G_t = G_t.scatter_add_(0, labels, minus_one).mul_(scale)
                grads = (G_t @ feats, G_t.sum(1))
                skipped += not apply_step(optimizer, params, grads, fused=fused, plain=True)
        return skipped
    for _ in range(steps):
        z = head(feats)
        loss = (
            F.cross_entropy(z if mask is None else z + mask, y, reduction="none") * scale
        ).sum()
        skipped += not gradient_step(loss, optimizer, params)
    return skipped


def fine_tune_heads(
    heads: nn.Module,
    optimizer,
    feats: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor | None,
    steps: int,
    mask: torch.Tensor | None,
    tasks,
    active: list[int],
) -> int:
    """:func:`fine_tune_head` for a :class:`~skocl._tasks.TaskHeads`: ``steps``
    full-batch steps on the sum of the losses of the tasks in ``active`` (those that
    some row labels), each averaged over its labelled rows. Only the heads of ``active``
    tasks get a gradient: the optimizer leaves the others as they are (Adam would move a
    head with a zero gradient by its momentum). Returns the number of steps skipped."""
    params = [p for t in active for p in heads.heads[t].parameters() if p.requires_grad]
    for p in heads.parameters():
        p.grad = None
    skipped = 0
    if not params:
        return skipped
    for _ in range(steps):
        loss = tasks.loss(heads(feats), y, w, mask, active)
        skipped += not gradient_step(loss, optimizer, params)
    return skipped


def argmax_rows(z: torch.Tensor) -> torch.Tensor:
    return z.argmax(1)


def trunk_forward(trunk):
    """The trunk's forward for inference: :class:`~skocl._mlp_grads.PlainForward` where
    it covers the trunk, else the module (one built already is returned as it is)."""
    if isinstance(trunk, PlainForward):
        return trunk
    return PlainForward.of(trunk) or trunk


@torch.no_grad()
def features(trunk, rows: Rows, batch_size: int) -> torch.Tensor:
    """Trunk features of every row of ``rows``, without a graph (callers set eval
    mode), computed :meth:`Rows.slices` at a time (``trunk``: the module or its
    :func:`trunk_forward`)."""
    forward = trunk_forward(trunk)
    return _joined([forward(x) for x in rows.slices(batch_size)])


@torch.no_grad()
def head_features(trunk, rows: Rows, batch_size: int, replayed=None) -> torch.Tensor:
    """:func:`features` of ``rows`` followed by those of the ``replayed`` rows (a
    tensor, or :class:`~skocl.sparse.SparseRows` for a network that reads sparse rows,
    on the device; None: none). Rows that can be taken whole (a dense tensor, sparse
    rows) go through the trunk joined, in one forward: no copy of the features (6,096
    rows of the default trunk, 1.02 against 1.44 ms; the same values). The rows of a
    CSR matrix densified for a dense network are taken a mini-batch at a time."""
    if replayed is None:
        return features(trunk, rows, batch_size)
    forward = trunk_forward(trunk)
    if not rows.sparse and not isinstance(rows.X, torch.Tensor):
        return torch.cat([features(forward, rows, batch_size), forward(replayed)])
    X = rows.take(None)
    if isinstance(X, SparseRows):
        return forward(SparseRows.cat([X, replayed.to(X.device, X.dtype)]))
    return forward(torch.cat([X, replayed]))


@torch.no_grad()
def predict_rows(
    trunk: nn.Module, head: nn.Module, rows: Rows, batch_size: int, mask=None, tasks=None
) -> np.ndarray:
    """Predicted class indices of every row of ``rows`` (callers set eval mode; ``mask``
    added to the logits, as in :func:`forward`); with ``tasks``, global indices of
    shape ``(n, n_tasks)``.
    Rows requested whole stay on the device for the update that follows, so this runs
    under ``no_grad``, not ``inference_mode``, whose tensors autograd refuses."""
    parts = []
    forward = trunk_forward(trunk)
    for x in rows.slices(batch_size):
        z = head(forward(x))
        masked = z if mask is None else z + mask
        if tasks is None:
            pred = masked.argmax(1)
        else:
            offsets = torch.as_tensor(tasks.offsets[:-1], device=z.device)
            pred = tasks.argmax(masked) + offsets
        if not math.isfinite(z.sum().item()):  # no prediction is a wrong one
            bad = ~torch.isfinite(z).all(1)
            pred = pred.masked_fill(bad if tasks is None else bad[:, None], -1)
        parts.append(pred)
    return _joined(parts).cpu().numpy()


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def forward(
    trunk: nn.Module,
    head: nn.Module,
    X: torch.Tensor,
    post=None,
    device=None,
    offset: int = 0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``post(head(trunk(X)) + mask)`` in inference mode, in slices that bound memory;
    each slice is copied to ``device`` (when given) just before its forward pass. Logits
    that are not finite are an error naming the row (counted from ``offset``), checked
    before ``mask`` (``-inf`` for classes no row has shown) is added."""

    def run(rows):
        if device is not None and rows.device != device:
            rows = rows.to(device, non_blocking=True)
        return head(trunk(rows))

    with torch.inference_mode():
        if X.shape[0] <= FORWARD_ROWS:
            z = run(X)
        else:
            z = torch.cat(
                [run(X[s : s + FORWARD_ROWS]) for s in range(0, X.shape[0], FORWARD_ROWS)]
            )
        check_logits(z, offset)
        if mask is not None:
            z = z + mask
        return z if post is None else post(z)


def check_logits(z: torch.Tensor, offset: int = 0) -> None:
    """An error naming the first row whose logits are not finite (an input far outside
    what the network was trained on overflows), instead of NaN probabilities."""
    # One reduction read back as a Python float (checks of this kind are on every hot
    # path: math.isfinite of .item() costs a quarter of torch.isfinite on a tensor);
    # only a non-finite sum looks at the rows.
    if math.isfinite(z.sum().item()) or bool(torch.isfinite(z).all()):
        return
    row = offset + int(torch.nonzero(~torch.isfinite(z).all(1))[0, 0])
    raise ValueError(
        f"Input X row {row} gives logits that are not finite in {z.dtype} (the network "
        "overflows on it): its values are far beyond those the model learned from. Scale "
        "the inputs as in training."
    )


def to_cpu(tree):
    """Every tensor in a nest of dicts, lists and tuples, on the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {k: to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(v) for v in tree)
    return tree


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's parameters and buffers."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
