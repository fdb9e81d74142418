"""The head's fine-tune at several rates side by side, the served one picked on the
chunks that come next (each chunk is scored before it is learned)."""

from __future__ import annotations

import math

import numpy as np
import torch

# Multiples of ``head_lr`` at which copies of the head are fine-tuned side by side.
# Chosen by benchmarks/bench_defaults.py (issue 10; benchmarks/DEFAULTS.md,
# "2026-12-06 05:00"): (1, 0.1, 0.01) keeps the README quickstart from falling after a
# partial_fit (largest drop 0.075 to 0.003, 5 seeds) with the river streams'
# prequential accuracy, Split-/Permuted-Digits and class-incremental digits unchanged
# within their seeds' spread; (1, 0.1) and (1, 0.01) left drops of 0.02-0.03.
RATES = (1.0, 0.1, 0.01)
# Weight of the older chunks in a candidate's running error rate.
DECAY = 0.5
# Another candidate is served when its running error rate is below the served one's by
# more than this many binomial standard errors of a chunk's rate: a candidate that is
# better by chance on one chunk does not take over (without the margin the quickstart's
# largest drop was 0.009; with 1 or 2, 0.003).
SWITCH_Z = 1.0


class HeadRates:
    """Copies of the head fine-tuned at several multiples (``rates``) of ``head_lr``
    on the same features; the learner serves the copy with the lowest recent error.

    Every chunk is first predicted by each copy (on the trunk's features before the
    update): its error rate joins the copy's running rate (``errors``, an exponential
    average with weight ``1 - DECAY`` on the newest chunk). Then every copy is
    fine-tuned, with its own optimizer state, and the served copy (``current``) changes
    when another's running error is lower by more than ``SWITCH_Z`` standard errors. A
    high rate follows a concept that switches; a low one does not spoil a head that was
    trained on more rows than a chunk holds (a fresh ``fit`` then a ``partial_fit``).
    Until two chunks are scored the lowest rate is served. Only a head trained before
    its first update has copies; one that is still learning keeps ``head_lr`` alone
    (:meth:`start`).

    The copies are replaced, never changed in place, so that a checkpoint's shallow
    copy of this object restores it.

    Attributes
    ----------
    rates : tuple of float
        The multiples of ``head_lr``.
    values : list of list of Tensor or None
        Per copy, its values of the head's parameters (None before the first update).
    states : list of list of dict
        Per copy and parameter, the optimizer's state.
    errors : ndarray of shape (n_rates,)
        Running error rate per copy.
    current : int
        The served copy (its values are the head's).
    scored : int
        Chunks scored.
    off : bool
        Whether the head keeps ``head_lr`` alone: it learns from scratch, or ``fit``
        stopped at ``max_iter`` (:meth:`start`).
    """

    def __init__(self, rates=RATES) -> None:
        self.rates = tuple(rates)
        self.values: list | None = None
        self.states: list = []
        self.errors = np.zeros(len(self.rates))
        self.current = int(np.argmin(self.rates))
        self.scored = 0
        self.rows = 0.0
        self.off = False

    @property
    def rate(self) -> float:
        """The served multiple of ``head_lr``."""
        return self.rates[self.current]

    def start(self, params, trained: bool) -> None:
        """At the first update: make the copies from the head's ``params`` when the
        head is ``trained`` (by a ``fit`` that converged, or a user's network), serving
        the lowest rate first; a head that learns from scratch, or after a ``fit`` that
        stopped at ``max_iter``, keeps ``head_lr`` alone (``off``): there a slow copy
        looks better on the next chunks than it ends up (see the user guide)."""
        if self.values is not None or self.off:
            return
        if not trained:
            self.off = True
            return
        self.values = [[p.detach().clone() for p in params] for _ in self.rates]
        self.states = [[{} for _ in params] for _ in self.rates]
        self.current = int(np.argmin(self.rates))

    @torch.no_grad()
    def score(self, head, params, feats, y, w, mask) -> torch.Tensor:
        """Add each copy's error on a chunk (``feats``: the trunk's features of its
        rows before the update, ``w``: row weights or None) to its running rate.
        Returns the served copy's predictions (-1 where its logits are not finite)."""
        served = [p.detach().clone() for p in params]
        wrong, served_pred = [], None
        for k, values in enumerate(self.values):
            _load(params, values)
            z = head(feats)
            pred = (z if mask is None else z + mask).argmax(1)
            if not math.isfinite(z.sum().item()):  # no prediction is a wrong one
                pred = pred.masked_fill(~torch.isfinite(z).all(1), -1)
            wrong.append(pred != y)
            if k == self.current:
                served_pred = pred
        _load(params, served)
        wrong = torch.stack(wrong).to(feats.dtype)
        weight = float(len(y)) if w is None else float(w.sum())
        if weight <= 0:  # rows that weigh nothing say nothing
            return served_pred
        # One read from the device for every copy's error.
        errors = np.asarray((wrong.mean(1) if w is None else wrong @ w / weight).tolist())
        if self.scored:
            errors = DECAY * self.errors + (1 - DECAY) * errors
        self.errors = errors
        self.scored += 1
        self.rows = weight
        return served_pred

    def fine_tune(self, step, optimizer, params, lr: float) -> int:
        """Fine-tune every copy, from its own values and optimizer state, with
        ``step()`` (the head's steps on fixed features, returning the number skipped)
        at its multiple of ``lr``, then serve the copy with the lowest running error
        (:meth:`_pick`). A copy whose weights end up non-finite keeps the values it
        had. Returns the steps skipped by the served copy."""
        values, states, skipped = [], [], []
        for k, rate in enumerate(self.rates):
            _load(params, self.values[k])
            _load_state(optimizer, params, self.states[k])
            for group in optimizer.param_groups:
                group["lr"] = lr * rate
            skipped.append(step())
            new = [p.detach().clone() for p in params]
            if math.isfinite(sum(float(v.sum()) for v in new)):
                values.append(new)
                states.append([optimizer.state.get(p, {}) for p in params])
            else:
                values.append(self.values[k])
                states.append(self.states[k])
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.values, self.states = values, states
        self._pick()
        _load(params, values[self.current])
        _load_state(optimizer, params, states[self.current])
        return skipped[self.current]

    def _pick(self) -> None:
        if self.scored < 2:
            return
        best = int(np.argmin(self.errors))
        p = min(max(float(self.errors[self.current]), 1e-3), 1 - 1e-3)
        if self.errors[self.current] - self.errors[best] > SWITCH_Z * math.sqrt(
            p * (1 - p) / max(self.rows, 1.0)
        ):
            self.current = best

    def grow(self, growth) -> None:
        """Each copy's known classes keep their rows (and optimizer state); new classes
        start from the grown head's fresh rows, with no state."""
        if self.values is None:
            return
        idx = torch.as_tensor(growth.positions, device=growth.device)
        grown = {id(old): new for old, new in growth.pairs}
        values, states = [], []
        for copy_values, copy_states in zip(self.values, self.states):
            vs, sts = [], []
            for old, v, st in zip(growth.old_head_params, copy_values, copy_states):
                new = grown.get(id(old))
                if new is None:
                    vs.append(v)
                    sts.append(st)
                    continue
                rows = new.detach().clone()
                rows[idx] = v
                vs.append(rows)
                sts.append({key: _padded(s, v.shape, rows, idx) for key, s in st.items()})
            values.append(vs)
            states.append(sts)
        self.values, self.states = values, states

    def state_dict(self) -> dict:
        return {
            "rates": list(self.rates),
            "values": self.values,
            "states": self.states,
            "errors": self.errors.tolist(),
            "current": self.current,
            "scored": self.scored,
            "rows": self.rows,
            "off": self.off,
        }

    def load_state_dict(self, state: dict | None, device, optimizer) -> None:
        """Restore what :meth:`state_dict` wrote (optimizer state placed as
        ``optimizer`` keeps it); a file without it (written before the head had several
        rates) starts the copies afresh at the next update."""
        on_device = bool(
            optimizer is not None
            and (optimizer.defaults.get("fused") or optimizer.defaults.get("capturable"))
        )
        if state is None or tuple(state["rates"]) != self.rates:
            return
        if state["values"] is not None:
            self.values = [[v.to(device) for v in vs] for vs in state["values"]]
            self.states = [
                [{k: _to(v, device, k != "step" or on_device) for k, v in st.items()}
                 for st in sts]
                for sts in state["states"]
            ]  # fmt: skip
        self.errors = np.asarray(state["errors"], dtype=float)
        self.current = int(state["current"])
        self.scored = int(state["scored"])
        self.rows = float(state["rows"])
        self.off = bool(state["off"])


def check_head_rates(rates) -> tuple:
    """``head_rates`` as a tuple of floats, or an error naming the entry that is not a
    positive finite number."""
    rates = tuple(rates)
    if not rates:
        raise ValueError("head_rates must hold at least one multiple of head_lr; got ().")
    for i, rate in enumerate(rates):
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float, np.number))
            or not (math.isfinite(rate) and rate > 0)
        ):
            raise ValueError(
                f"head_rates[{i}] is {rate!r}: each entry must be a positive finite "
                "multiple of head_lr."
            )
    return tuple(float(r) for r in rates)


@torch.no_grad()
def _load(params, values) -> None:
    for p, v in zip(params, values):
        p.copy_(v)


def _load_state(optimizer, params, states) -> None:
    """Give ``params`` copies of the optimizer ``states`` (copies: the optimizer changes
    its state in place, and a copy's state must stay as it was)."""
    for p, st in zip(params, states):
        optimizer.state.pop(p, None)
        if st:
            optimizer.state[p] = {key: _cloned(v) for key, v in st.items()}


def _cloned(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def _to(value, device, move: bool):
    """A saved optimizer state value on ``device`` (``move``), as torch places it: a
    step count stays on the CPU unless the optimizer is fused or capturable."""
    return value.to(device) if isinstance(value, torch.Tensor) and move else value


def _padded(value, shape, like, idx):
    if isinstance(value, torch.Tensor) and value.shape == shape:
        padded = torch.zeros_like(like)
        padded[idx] = value
        return padded
    return value
