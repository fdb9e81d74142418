"""The learner as it was before a call, put back exactly if the call fails (the
all-or-nothing promise of every ``fit`` and ``partial_fit``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from ._continual import ReplayMemory
from ._steps import Saved
from ._tasks import TaskHeads

if TYPE_CHECKING:
    from ._learner import OnlineLearner


class Checkpoint:
    """The learner as it was before a call, put back exactly if the call fails.

    A call may replace parameters (class growth) or change them in place (optimizer
    steps, EMA), change optimizer state, memory, anchor, fusion, drift monitor and the
    random stream. Tensors changed in place are cloned (of a wide sparse layer, only
    the rows in ``stake``, see :meth:`OnlineLearner.at_stake`); objects that a call
    replaces are kept by reference. A replay memory replaces its tensors, but for the
    rows it writes in place, which it records (:meth:`ReplayMemory.record`) until
    :meth:`close`.
    """

    def __init__(self, learner: OnlineLearner, stake: dict | None = None) -> None:
        self.learner = learner
        stake = stake or {}
        modules = [learner.trunk, learner.head, *(learner.fusion.copy or ())]
        subs = [m for module in modules for m in module.modules()]
        self.params = [
            (m, name, Saved(p, stake.get(p)))
            for m in subs
            for name, p in m._parameters.items()
            if p is not None
        ]
        # What the update's own transaction can reuse instead of copying again.
        self.saved = {saved.t: saved for _, _, saved in self.params}
        self.buffers = [(b, b.clone()) for m in subs for b in m._buffers.values() if b is not None]
        self.sizes = [(m, m.out_features) for m in subs if isinstance(m, torch.nn.Linear)]
        # A new task appends a head: the list of heads as it was.
        self.heads = [(m, list(m.heads)) for m in subs if isinstance(m, TaskHeads)]
        self.optimizers = [
            (
                opt,
                [list(group["params"]) for group in opt.param_groups],
                {
                    p: {k: _saved(v, p, stake.get(p)) for k, v in st.items()}
                    for p, st in opt.state.items()
                },
            )
            for opt in (learner.trunk_optimizer, learner.head_optimizer)
            if opt is not None
        ]
        # The memories that write rows in place record what they overwrite (the memory,
        # or the row selection a sparse memory keeps among its parts), from before
        # their attributes are kept.
        self.recording = [
            (m, m.record())
            for m in (learner.memory, *learner.memory.parts)
            if isinstance(m, ReplayMemory)
        ]
        parts = (learner, learner.memory, learner.fusion, learner.anchor, learner.rates)
        parts += (learner.fresh,)
        parts += learner.memory.parts
        self.attrs = [(obj, dict(vars(obj))) for obj in parts if obj is not None]
        self.seen = learner.memory.seen.clone()
        self.drift = learner.drift.snapshot()
        self.rng_state = learner.rng.state

    def close(self) -> None:
        """The call ended (restored or not): the memory's recording of it ends."""
        for memory, mark in self.recording:
            memory.stop(mark)

    @torch.no_grad()
    def restore(self) -> None:
        for memory, mark in self.recording:
            memory.undo(mark)
        for m, name, saved in self.params:
            m._parameters[name] = saved.restore()
        for b, value in self.buffers:
            b.copy_(value)
        for m, out_features in self.sizes:
            m.out_features = out_features
        for m, heads in self.heads:
            m.heads = torch.nn.ModuleList(heads)
        for opt, params, state in self.optimizers:
            for group, group_params in zip(opt.param_groups, params):
                group["params"] = group_params
            opt.state.clear()
            opt.state.update(
                {p: {k: _restored(v) for k, v in st.items()} for p, st in state.items()}
            )
        for obj, attrs in self.attrs:
            vars(obj).clear()
            vars(obj).update(attrs)
        learner = self.learner
        learner.memory.seen = self.seen
        learner.drift = self.drift
        learner.rng.state = self.rng_state
        for module in (learner.module, learner.trunk, learner.head):
            module.eval()


def _saved(value, param, rows):
    """Optimizer state of ``param`` kept by a checkpoint: tensors cloned (state with a
    row per row of a wide layer, such as Adam's moments, only at ``rows``), other
    values as they are."""
    if not isinstance(value, torch.Tensor):
        return value
    if rows is not None and value.dim() and value.shape[0] == param.shape[0]:
        return Saved(value, rows)
    return value.clone()


def _restored(value):
    return value.restore() if isinstance(value, Saved) else value


@contextlib.contextmanager
def all_or_nothing(estimator, X=None, keep_learner=True) -> Iterator[Checkpoint | None]:
    """A call of ``estimator`` (an ``OnlineFineTuneClassifier``) that fails (bad input,
    an exception in the user's module, a KeyboardInterrupt, a warning turned into an
    error) leaves it as it was: its attributes, and the learner's weights, optimizer
    state, memory, components and random stream (:class:`Checkpoint`; of a wide sparse
    layer, the rows an update on ``X`` can change). A call that builds a new learner
    (``keep_learner=False``) leaves the old one untouched. Yields the checkpoint (None
    without a learner to keep)."""
    saved = dict(vars(estimator))
    # Lists (``loss_curve_``) only grow during a call: their lengths put them back,
    # where a copy would cost a call more the longer the stream.
    lengths = [(v, len(v)) for v in saved.values() if type(v) is list]
    checkpoint = None
    if keep_learner and "learner_" in saved:
        learner = saved["learner_"]
        stake = None if X is None else learner.at_stake(X)
        checkpoint = Checkpoint(learner, stake)
    try:
        yield checkpoint
    except BaseException:
        if checkpoint is not None:
            checkpoint.restore()
        vars(estimator).clear()
        vars(estimator).update(saved)
        for v, n in lengths:
            del v[n:]
        raise
    finally:
        if checkpoint is not None:
            checkpoint.close()
