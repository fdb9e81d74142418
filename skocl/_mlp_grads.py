"""Closed-form backpropagation for the default network: a trunk of ``nn.Linear`` layers
and elementwise activations under an ``nn.Linear`` head, with the cross-entropy loss.

A step of the default MLP spends more time in autograd's bookkeeping than in its
arithmetic: recording the graph, then walking it back. Written out, the backward pass
of such a network is a handful of matrix products, the same ones autograd runs,
so the gradients are equal to autograd's up to the order of float operations
(``tests/test_mlp_grads.py`` checks them against autograd). ``bench_speed.py`` measures
what it saves.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.nn.modules import module as _module

_aten = torch.ops.aten
# Activation -> its backward from the activation's output (no input kept), written over
# the gradient it is given (a product of this module's own, not needed after).
_BACKWARD = {
    nn.ReLU: lambda g, out: _aten.threshold_backward.grad_input(g, out, 0, grad_input=g),
    nn.Tanh: lambda g, out: _aten.tanh_backward.grad_input(g, out, grad_input=g),
    nn.Sigmoid: lambda g, out: _aten.sigmoid_backward.grad_input(g, out, grad_input=g),
    nn.Identity: lambda g, out: g,
}
# Rows from which a hidden layer's weight gradient is taken as (a^T g)^T: MKL's kernel
# for that layout is faster from about 100 rows on (35 against 43 us at 200 rows and
# 20 inputs, 14 against 10 us at 40), the copy to the weight's layout included.
_ROWS_FIRST = 128


def _plain(m: nn.Module) -> bool:
    """No hooks that a forward or backward by hand would skip."""
    return not (
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
    )


def _globally_hooked() -> bool:
    return bool(
        _module._global_forward_hooks
        or _module._global_forward_pre_hooks
        or _module._global_backward_hooks
        or _module._global_backward_pre_hooks
    )


class MLPGrads:
    """The loss and gradients of ``head(trunk(X))`` for a trunk that is an
    ``nn.Sequential`` (nested ones included) of ``nn.Linear`` layers (with bias), each
    followed by at most one ReLU, tanh, sigmoid or identity activation, and an
    ``nn.Linear`` head (with bias). Build with :meth:`of`, which returns None for any
    other network, for parameters that are not some of the network's, and when a hook
    would be skipped.

    ``G = (softmax(z) - onehot(y)) * w / sum(w)`` is the gradient of the weighted mean
    cross-entropy with respect to the logits ``z``; each linear layer ``a -> a W^T + b``
    gets ``dW = G^T a``, ``db = sum G`` and passes ``G W`` down, through the
    activation's derivative (taken from its output).
    """

    def __init__(self, steps: list, wanted: list[tuple[int, int]]) -> None:
        self.layers = _detached(steps)
        # The head's bias as a column, for logits as classes by rows (a view: it follows
        # the optimizer's steps).
        self.bias_column = self.layers[-1][2][:, None]
        self.wanted = wanted  # for each parameter asked for: (layer, 0 weight / 1 bias)
        self.first = min(i for i, _ in wanted)  # the lowest layer with a gradient asked
        self.need = {i for i, _ in wanted}

    @classmethod
    def of(cls, trunk: nn.Module, head: nn.Module, params: list) -> MLPGrads | None:
        if not params or type(head) is not nn.Linear or _globally_hooked():
            return None
        steps = _linear_steps((*_layers(trunk), head))
        if not steps or steps[-1][0] is not head or steps[-1][1] is not None:
            return None
        if any(p._backward_hooks for p in params):
            return None
        key, held = _layers_key(steps)
        params = tuple(params)
        key = (key, *map(id, params))
        return reused(trunk, "grads", key, (held, params), lambda: cls._build(steps, params))

    @classmethod
    def _build(cls, steps: list, params: list) -> MLPGrads | None:
        if len({id(lin) for lin, _ in steps}) < len(steps):
            return None  # a layer used twice: its gradient would be a sum
        where = {}
        for i, (lin, _) in enumerate(steps):
            where[lin.weight] = (i, 0)
            where[lin.bias] = (i, 1)
        wanted = []
        for p in params:
            if p not in where:
                return None
            wanted.append(where[p])
        return cls(steps, wanted)

    def __call__(self, X: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, mask=None,
                 targets=None):  # fmt: skip
        """The weighted mean cross-entropy (``mask`` added to the logits, as in
        :func:`~skocl._steps.weighted_loss`) and the gradients of the parameters asked
        for, in their order. With ``targets`` of the last rows (``(targets, counts,
        scale)``, classes by rows, as :func:`~skocl._continual.batch_targets` gives
        them), ``scale`` times the summed squared gap of those rows' logits joins the
        loss (dark experience replay)."""
        layers = self.layers
        acts = [X]
        for _, Wt, b, act in layers[:-1]:
            acts.append(_layer(acts[-1], Wt, b, act))
        W = layers[-1][0]
        # Logits as classes by rows: softmax over a short first axis vectorises over the
        # rows, which torch's CPU softmax over a short last axis does not.
        z_t = raw_t = torch.addmm(self.bias_column, W, acts[-1].t())
        if mask is not None:
            z_t = z_t + mask[:, None]
        logp_t = torch.log_softmax(z_t, dim=0)
        n, labels = y.shape[0], y[None, :]
        picked = logp_t.gather(0, labels)
        # (softmax - onehot) * scale, the onehot's -1 added where each row's label is.
        G_t = logp_t.exp_().scatter_(0, labels, -1.0, reduce="add")
        if w is None:
            inverse, minus_inverse = _inverses(n, G_t.dtype)
            loss = picked.sum().mul_(minus_inverse)
            G_t.mul_(inverse)
        else:
            scale = (w / w.sum())[None, :]
            loss = -(picked * scale).sum()
            G_t.mul_(scale)
        if targets is not None:
            T_t, counts_t, scale = targets
            m = T_t.shape[1]
            gaps_t = raw_t[:, n - m :] - T_t
            if counts_t is not None:
                gaps_t.mul_(counts_t)
            flat = gaps_t.view(-1)
            loss = loss.add_(torch.dot(flat, flat), alpha=scale)
            G_t[:, n - m :].add_(gaps_t, alpha=2 * scale)
        first, need, grads = self.first, self.need, {}
        top = len(layers) - 1
        if top in need:
            grads[top] = (G_t @ acts[top], G_t.sum(1))
        if top > first:
            # g: the output gradient of the layer below, rows by units.
            g = torch.mm(G_t.t(), W)
            for i in range(top - 1, first - 1, -1):
                W, _, _, act = layers[i]
                if act is not None:
                    g = _BACKWARD[act](g, acts[i + 1])
                a = acts[i]
                if i in need:
                    dW = torch.mm(a.t(), g).t().contiguous() if n >= _ROWS_FIRST else g.t() @ a
                    grads[i] = (dW, g.sum(0))
                if i > first:
                    g = torch.mm(g, W)
        return loss, [grads[i][k] for i, k in self.wanted]


def _linear_steps(modules) -> list | None:
    """``[linear, activation type or None]`` per ``nn.Linear`` layer (with bias) of
    ``modules`` (hook-free, each layer followed by at most one activation of
    ``_BACKWARD``), input to output; None for anything else."""
    steps: list = []
    for m in modules:
        if m is None or not _plain(m):
            return None
        if type(m) is nn.Linear and m.bias is not None:
            steps.append([m, None])
        elif type(m) in _BACKWARD and steps and steps[-1][1] is None:
            steps[-1][1] = type(m)
        else:
            return None
    return steps


class PlainForward:
    """A trunk's forward as its layers' matrix products, each activation in place on
    its layer's fresh output: no module calls and no copy per activation (a 6,096-row
    forward of the default trunk: 0.40 against 0.99 ms). For a trunk that
    :class:`MLPGrads` covers, in inference (no graph is recorded); build with
    :meth:`of`, None for any other trunk."""

    def __init__(self, steps: list) -> None:
        self.layers = _detached(steps)

    @classmethod
    def of(cls, trunk: nn.Module) -> PlainForward | None:
        if _globally_hooked():
            return None
        steps = _linear_steps(_layers(trunk))
        if not steps:
            return None
        key, held = _layers_key(steps)
        return reused(trunk, "forward", key, held, lambda: cls(steps))

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        for _, Wt, b, act in self.layers:
            X = _layer(X, Wt, b, act)
        return X


# What MLPGrads.of and PlainForward.of built, per module they read (weakly: an entry
# goes with its module), for later calls on an unchanged network (their checks still
# run; building again costs about 30 us a partial_fit call of the defaults).
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# _inverses' tensors, per (n, dtype).
_SCALES: dict = {}


def _inverses(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """1/n and -1/n as 0-d tensors of ``dtype``, made once per process. An in-place
    product with a Python number first copies it into such a tensor (the same bits,
    about 1.5 us more a product)."""
    key = (n, dtype)
    scales = _SCALES.get(key)
    if scales is None:
        # Host scalars (never written): a 0-d host tensor multiplies a tensor on any
        # device.
        scales = _SCALES[key] = (
            torch.tensor(1.0 / n, dtype=dtype),
            torch.tensor(-1.0 / n, dtype=dtype),
        )
    return scales


def reused(owner, kind: str, key: tuple, held, build):
    """What ``build()`` returns, built once per ``owner`` and ``kind`` while ``key`` (a
    tuple of ``id`` of objects in ``held``, and plain values) stays the same. ``held`` is
    kept with it, so that no other object can take one of those ids. A cached value
    must not refer to ``owner`` (it would never go)."""
    entries = _BUILT.get(owner)
    if entries is None:
        entries = _BUILT.setdefault(owner, {})
    cached = entries.get(kind)
    if cached is not None and cached[0] == key:
        return cached[2]
    value = build()
    entries[kind] = (key, held, value)
    return value


def _layers_key(steps: list) -> tuple[tuple, list]:
    """What the built objects read of ``steps``' layers, as a key for :func:`reused`:
    each layer's activation, weight and bias tensors, and where those keep their values
    (a tensor's ``.data`` can be set to another); and the tensors whose ids it holds
    (not the layers: a trunk that is one layer would then never go)."""
    held = [(lin.weight, lin.bias) for lin, _ in steps]
    key = tuple(
        (act, id(W), id(b), W.data_ptr(), b.data_ptr()) for (W, b), (_, act) in zip(held, steps)
    )
    return key, held


def _layers(m: nn.Module):
    """The layers of nested ``nn.Sequential`` containers in order; None for a module
    that is not one and not a layer of its own."""
    if type(m) is not nn.Sequential:
        yield m
        return
    if not _plain(m):
        yield None
        return
    for child in m:
        yield from _layers(child)


def _detached(steps: list) -> list:
    """Each layer of ``steps`` as (weight, its transpose, bias, activation type or
    None): the tensors themselves, read once rather than through ``nn.Module`` at each
    use, and detached, so that no graph is recorded without a ``no_grad`` context per
    step (the optimizer updates them in place, which these views see)."""
    out = []
    for lin, act in steps:
        W = lin.weight.detach()
        out.append((W, W.t(), lin.bias.detach(), act))
    return out


def _layer(X: torch.Tensor, Wt: torch.Tensor, b: torch.Tensor, act) -> torch.Tensor:
    """One layer's output: ``X Wt + b`` (``Wt`` the weight's transpose), then the
    activation in place on it."""
    z = torch.addmm(b, X, Wt)
    return z if act is None or act is nn.Identity else _forward_(act, z)


def _forward_(act, z: torch.Tensor) -> torch.Tensor:
    """The activation, in place on a layer's fresh output."""
    if act is nn.ReLU:
        return torch.relu_(z)
    if act is nn.Tanh:
        return torch.tanh_(z)
    return torch.sigmoid_(z)
