"""A fresh head started at a drift, learned beside the head, that takes over when it
predicts better: the background learner of river's adaptive random forest, for the
head."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ._head_rates import DECAY, SWITCH_Z, HeadRates

# Chunks a fresh head is scored on before it ends if it has not taken over: its cost
# (about 1.25 times a 32-row call while it learns) is bounded. bench_fresh_head.py
# (DEFAULTS.md): take-overs came after 1 to 6 chunks but for two of 53 (28 and 80
# chunks of 32 rows), while fresh heads that never took over learned on for hundreds.
PATIENCE = 10


class FreshHead(HeadRates):
    """A head started from zero weights when the learner reacts to a drift, fine-tuned
    on the same features and rows as the head (at ``head_lr``, Adam from fresh moments),
    that replaces the head once it predicts the new concept better.

    After a drift that switches the concept (labels swapped, a new rule), the head must
    unlearn the old concept before it can learn the new one; a head that starts from
    zero only has to learn. It is the background learner of river's
    ``ARFClassifier``: it replaces the head only when the chunks since the drift say so,
    so a drift that the head follows well (or a false alarm) leaves the head as it is.

    Each chunk is predicted, before it is learned, by the fresh head and by the head
    (``live``): each keeps a running error rate (an exponential average with weight
    ``1 - DECAY`` on the newest chunk, from the first chunk after the start). The fresh
    head takes over (:meth:`leads`) when its rate is below the head's by more than
    ``SWITCH_Z`` binomial standard errors of a chunk's rate, the margin of
    :class:`~skocl._head_rates.HeadRates`; one that has not after ``PATIENCE`` chunks
    ends. A fresh head already ahead of the head carries on through the next reaction;
    otherwise a reaction starts it again.

    Attributes
    ----------
    weight, bias, moments, steps, errors, scored, rows
        As :class:`~skocl._head_rates.HeadRates`, of one copy; ``weight`` is None when
        no fresh head is learning.
    live : float
        The head's running error rate over the same chunks.
    takeovers : int
        Times a fresh head has replaced the head.
    """

    def __init__(self) -> None:
        super().__init__((1.0,))
        self.live = 0.0
        self.takeovers = 0

    @property
    def active(self) -> bool:
        return self.weight is not None

    def allowed(self, learner, s, watch: bool) -> bool:
        """Whether a drift may start a fresh head in this update of ``learner`` (settings
        ``s``, drift ``watch``-ed): ``fresh_head`` set, a plain ``nn.Linear`` head with a
        bias, fine-tuned (``head_steps`` and ``head_lr`` above 0) with Adam or AdamW.
        Ends one that is no longer allowed."""
        head = learner.head
        ok = (
            s.fresh_head and watch and type(head) is nn.Linear and head.bias is not None
            and len(learner.head_params) == 2 and s.optimizer in ("adam", "adamw")
            and bool(s.head_steps) and s.head_lr > 0
        )  # fmt: skip
        if not ok:
            self.end()
        return ok

    def begin(self, head, labels: np.ndarray, held: np.ndarray) -> None:
        """At a concept change: start from zero weights and moments, the shape of
        ``head`` (a plain ``nn.Linear`` with a bias), when most of the chunk's
        ``labels`` are classes that the replay memory held (``held``: its rows seen per
        class) and no fresh head is ahead of the head already. A chunk mostly of new
        classes brings new knowledge, not a new concept: the head keeps what it knows."""
        known = labels < len(held)
        known[known] = held[labels[known]] > 0
        if known.mean() <= 0.5 or (self.active and self.scored and self.errors[0] < self.live):
            return
        self.weight = torch.zeros_like(head.weight.detach()).unsqueeze(0)
        self.bias = torch.zeros_like(head.bias.detach()).unsqueeze(0)
        self.moments = [torch.zeros_like(t) for t in (self.weight, self.bias) * 2]
        self.steps = np.zeros(1, dtype=np.int64)
        self.scored, self.rows = 0, 0.0
        self.errors, self.live = np.zeros(1), 0.0

    def end(self) -> None:
        self.weight = self.bias = None
        self.moments = []

    @torch.no_grad()
    def score(self, feats, y, w, mask, live_pred) -> None:
        """Add the fresh head's and the head's (its predictions ``live_pred``) errors on
        a chunk to their running rates."""
        scored = self.scored
        super().score(feats, y, w, mask)
        if self.scored == scored:  # rows that weigh nothing say nothing
            return
        wrong = (live_pred != y).to(feats.dtype)
        rate = float(wrong.mean() if w is None else w @ wrong / w.sum())
        self.live = rate if scored == 0 else DECAY * self.live + (1 - DECAY) * rate

    def decide(self) -> bool:
        """After a chunk is scored: whether the fresh head takes over now (it
        :meth:`leads`); one that has not after ``PATIENCE`` chunks ends."""
        if self.leads():
            return True
        if self.scored >= PATIENCE:
            self.end()
        return False

    def leads(self) -> bool:
        """Whether the fresh head's running error is below the head's by the margin."""
        if not self.scored:
            return False
        p = min(max(self.live, 1e-3), 1 - 1e-3)
        return self.live - float(self.errors[0]) > SWITCH_Z * math.sqrt(
            p * (1 - p) / max(self.rows, 1.0)
        )

    @torch.no_grad()
    def take_over(self, head, optimizer, rates) -> None:
        """Make the fresh head the head: its weights, and its Adam moments and step
        count in ``optimizer``'s state of the head (and, when the head has copies at
        several ``rates``, in the copy at its rate, which serves); then no fresh head is
        learning."""
        head.weight.copy_(self.weight[0])
        head.bias.copy_(self.bias[0])
        if rates is not None and rates.weight is not None:
            # It takes the place of the copy at its own rate (the fastest, if none is
            # at head_lr), which serves; the slower copies keep what they know, as a
            # concept that comes back finds it there.
            i = rates.rates.index(1.0) if 1.0 in rates.rates else int(np.argmax(rates.rates))
            weight, bias = rates.weight.clone(), rates.bias.clone()
            weight[i], bias[i] = self.weight[0], self.bias[0]
            moments = [m.clone() for m in rates.moments]
            for m, fresh in zip(moments, self.moments):
                m[i] = fresh[0]
            steps, errors = rates.steps.copy(), rates.errors.copy()
            steps[i], errors[i] = self.steps[0], self.errors[0]
            rates.weight, rates.bias, rates.moments = weight, bias, moments
            rates.steps, rates.errors, rates.current = steps, errors, i
        state = {} if optimizer is None else optimizer.state
        for p, m, v in zip((head.weight, head.bias), self.moments[:2], self.moments[2:]):
            st = state.get(p)
            if st:
                st["exp_avg"].copy_(m[0])
                st["exp_avg_sq"].copy_(v[0])
                if torch.is_tensor(st["step"]):
                    st["step"].fill_(int(self.steps[0]))
                else:
                    st["step"] = int(self.steps[0])
        self.takeovers += 1
        self.end()

    def _start_rows(self, weight, bias) -> tuple[torch.Tensor, torch.Tensor]:
        """New classes start at zero, as the rest of a fresh head did."""
        return torch.zeros_like(weight).unsqueeze(0), torch.zeros_like(bias).unsqueeze(0)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "live": self.live, "takeovers": self.takeovers}

    def load_state_dict(self, state: dict | None, device) -> None:
        """Restore what :meth:`state_dict` wrote; a file without it (written before
        fresh heads) has none learning."""
        if state is None:
            return
        super().load_state_dict(state, device)
        if state["weight"] is None:
            self.end()
        self.live = float(state["live"])
        self.takeovers = int(state["takeovers"])
