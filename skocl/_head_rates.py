"""The head's fine-tune at several rates side by side, the served one picked on the
chunks that come next (each chunk is scored before it is learned)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ._lda_head import REFRESH_ROWS, REFRESH_SHARE, StreamingLDA
from ._steps import adam_kernel, all_finite

# Multiples of ``head_lr`` at which copies of the head are fine-tuned side by side.
# Chosen by benchmarks/bench_defaults.py and bench_head_rates.py (issue 10;
# benchmarks/DEFAULTS.md, "several head rates"): with (1, 0.1, 0.01) the README
# quickstart's largest drop after a partial_fit fell from 0.075 to 0.003 (5 seeds), a
# stationary stream's from 0.016 to 0.007, streams that switch concept after a fit
# gained 1.5 points of prequential accuracy (river's generators, 3 seeds), and a label
# switch is followed as fast as with head_lr alone. (1, 0.1) left a drop of 0.011;
# (1, 0.01) measured the same as the default. "lda": a closed-form candidate beside them
# (StreamingLDA; DEFAULTS.md, "a closed-form head"): the quickstart's end accuracy went
# from 0.889 to that of fit on all its rows.
RATES = (1.0, 0.1, 0.01, "lda")
# The entry of ``head_rates`` that asks for the closed-form candidate.
LDA = "lda"
# Weight of the older chunks in a copy's running error rate, and the margin: another
# copy is served when its running error rate is below the served one's by more than
# SWITCH_Z binomial standard errors of a chunk's rate, so a copy better by chance on
# one chunk does not take over. Swept with bench_head_rates.py --decay --switch-z
# (DEFAULTS.md): without the margin the quickstart's largest drop was 0.009 (0.003 with
# it); DECAY 0.8 or SWITCH_Z 2 followed a label switch later (held-out 0.005-0.046
# three chunks after it, against 0.054) and lost 0.2-1.2 points after a fit.
DECAY = 0.5
SWITCH_Z = 1.0
BETAS, EPS = (0.9, 0.999), 1e-8  # torch's Adam defaults, which skocl's optimizers use


class HeadRates:
    """Copies of a linear head fine-tuned at several multiples (``rates``) of
    ``head_lr`` on the same features, and (``"lda"`` among them) a head in closed form,
    :class:`~skocl._lda_head.StreamingLDA`; the learner serves the candidate with the
    lowest recent prequential error.

    Every chunk is first predicted by each copy (on the trunk's features before the
    update): its error rate joins the copy's running rate (``errors``, an exponential
    average with weight ``1 - DECAY`` on the newest chunk). Then every copy takes the
    head's steps from its own weights and Adam moments, and the served copy
    (``current``) changes when another's running error is lower by more than
    ``SWITCH_Z`` standard errors. A high rate follows a concept that switches; a low
    one does not spoil a head trained on more rows than a chunk holds (a ``fit`` then a
    ``partial_fit``). The copies are one stacked weight tensor, so all of them cost one
    matrix product per step.

    Only a head trained before its first update has copies (:meth:`start`); the others,
    and heads that are not a plain ``nn.Linear`` or optimizers other than Adam and
    AdamW, keep ``head_lr`` alone (``off``). The copies are replaced, never changed in
    place, so that a checkpoint's shallow copy of this object restores it.

    The closed-form candidate learns from the chunk's rows alone (not the replayed
    ones, which it has counted already), starting from the replay memory's rows at the
    first update; it is served only while it has rows of every class that can be
    predicted, and a concept change drops the means of the classes whose replay rows
    are dropped.

    A head that learns from scratch has no candidates (``off``) until the first concept
    change (:meth:`start_at_change`): then they start as after a ``fit``, and because
    the trunk still learns, the closed-form candidate also counts the replayed rows
    (their features from the trunk of now) and keeps statistics of at most
    ``REFRESH_ROWS`` rows (``refresh``).

    Attributes
    ----------
    spec : tuple
        ``head_rates`` as given.
    rates : tuple of float
        The multiples of ``head_lr``.
    lda : StreamingLDA or None
        The closed-form candidate (None when ``spec`` has no ``"lda"``, or before the
        first update).
    weight, bias : Tensor or None
        The copies' weights, ``(n_rates, n_classes, width)`` and ``(n_rates,
        n_classes)`` (None before the first update).
    moments : list of Tensor
        Adam's first and second moments of ``weight`` and ``bias``.
    steps : ndarray of int
        Adam steps taken by each copy (its bias correction; a fresh head that takes
        over a copy brings its own).
    errors : ndarray of shape (n_candidates,)
        Running error rate per candidate: the copies, then the closed-form one.
    current : int
        The served candidate (its weights are the head's); ``len(rates)`` is the
        closed-form one.
    scored : int
        Chunks scored.
    off : bool
        Whether the head keeps ``head_lr`` alone.
    refresh : bool
        Whether the candidates started at a concept change (:meth:`start_at_change`).
    """

    def __init__(self, rates=RATES) -> None:
        self.spec = tuple(rates)
        self.rates = tuple(r for r in self.spec if r != LDA)
        self.wants_lda = LDA in self.spec
        self.lda: StreamingLDA | None = None
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.moments: list = []
        self.steps = np.zeros(len(self.rates), dtype=np.int64)
        self.errors = np.zeros(len(self.rates) + self.wants_lda)
        self.current = int(np.argmin(self.rates))
        self.scored = 0
        self.rows = 0.0
        self.off = False
        self.refresh = False

    @property
    def rate(self) -> float:
        """The served multiple of ``head_lr`` (nan while the closed-form head serves)."""
        return self.rates[self.current] if self.current < len(self.rates) else math.nan

    def start(self, head, optimizer: str, trained: bool, memory=None, refresh=False) -> None:
        """At the first update: copy ``head`` when it is ``trained`` (by a ``fit`` that
        converged, or a user's network), a plain ``nn.Linear`` with a bias, and the
        ``optimizer`` is Adam or AdamW, serving the lowest rate first. Otherwise the
        head keeps ``head_lr`` alone (``off``): a head that learns from scratch, or after
        a ``fit`` that stopped at ``max_iter``, is still learning, and there a slow copy
        looks better on the next chunks than it ends up (see the user guide).
        ``memory``: None, or ``(feats, y, gen)``, the replay memory's rows' features and
        class indices, from which the closed-form candidate starts; ``refresh``: it
        keeps at most ``REFRESH_ROWS`` rows and is solved every ``REFRESH_SHARE`` of
        them."""
        if self.weight is not None or self.off:
            return
        plain = type(head) is nn.Linear and head.bias is not None
        if not (trained and plain and optimizer in ("adam", "adamw")):
            self.off = True
            return
        k = len(self.rates)
        with torch.no_grad():
            self.weight = head.weight.detach().unsqueeze(0).repeat(k, 1, 1)
            self.bias = head.bias.detach().unsqueeze(0).repeat(k, 1)
        self.moments = [torch.zeros_like(t) for t in (self.weight, self.bias) * 2]
        self.current = int(np.argmin(self.rates))
        if self.wants_lda:
            c, h = head.weight.shape
            limits = (REFRESH_ROWS, REFRESH_SHARE) if refresh else (None, None)
            lda = StreamingLDA.empty(c, h, head.weight.device, *limits)
            if memory is not None:
                feats, y, gen = memory
                lda = lda.added(feats, y, None, gen, cov_rows=None)  # once: each row
            self.lda = lda

    def start_at_change(self, head, optimizer: str, memory=None) -> None:
        """At a concept change (the replay memory dropped contradicted rows) of a head
        that keeps ``head_lr`` alone (``off``: it learns from scratch, or after a
        ``fit`` that stopped at ``max_iter``): the candidates start from ``head`` as
        after a ``fit`` (:meth:`start`), but with one copy only, at the rate nearest 1
        (``rates`` becomes that one), the closed-form one keeping at most
        ``REFRESH_ROWS`` rows (solved every ``REFRESH_SHARE`` of them), and ``refresh``
        set. Such a head is still learning, where a slow copy misleads; after a concept
        change it learns a new concept, where the closed-form candidate catches up
        within a few chunks (DEFAULTS.md, "Candidates at a concept change": issue 10's
        river protocol 0.867 to 0.875, Sine 0.921 to 0.952)."""
        if not self.off or self.weight is not None:
            return
        rates = self.rates
        # One copy, at the rate nearest head_lr itself: after a concept change the
        # slower ones added nothing measured and cost a third of a 32-row call.
        self.rates = (min(rates, key=lambda r: abs(math.log(r))),)
        self.steps = np.zeros(1, dtype=np.int64)
        self.errors = np.zeros(1 + self.wants_lda)
        self.off = False
        self.start(head, optimizer, True, memory, refresh=True)
        self.refresh = self.weight is not None
        if not self.refresh:  # not a head to copy: off again, as it was
            self.rates, self.steps = rates, np.zeros(len(rates), dtype=np.int64)
            self.errors = np.zeros(len(rates) + self.wants_lda)

    @torch.no_grad()
    def score(self, feats, y, w, mask) -> torch.Tensor:
        """Add each copy's error on a chunk (``feats``: the trunk's features of its
        rows before the update, ``w``: row weights or None) to its running rate.
        Returns the served copy's predictions (-1 where its logits are not finite)."""
        z = _logits(self.weight, self.bias, feats)
        pred = (z if mask is None else z + mask).argmax(2)
        finite = math.isfinite(z.sum().item())
        if not finite:  # no prediction is a wrong one
            pred = pred.masked_fill(~torch.isfinite(z).all(2), -1)
        if self.lda is not None:
            closed = self.lda.predict(feats, mask)
            if not finite:  # of rows whose features are not finite
                closed = closed.masked_fill(~torch.isfinite(feats).all(1), -1)
            pred = torch.cat([pred, closed[:, None]], 1)
        served = pred[:, self.current]
        wrong = (pred != y[:, None]).to(feats.dtype)
        weight = float(len(y)) if w is None else float(w.sum())
        if weight <= 0:  # rows that weigh nothing say nothing
            return served
        # One read from the device for every copy's error.
        errors = np.asarray((wrong.mean(0) if w is None else w @ wrong / weight).tolist())
        if self.scored:
            errors = DECAY * self.errors + (1 - DECAY) * errors
        self.errors = errors
        self.scored += 1
        self.rows = weight
        return served

    @torch.no_grad()
    def fine_tune(self, head, feats, y, w, steps, mask, lr, weight_decay, decoupled,
                  new=None, gen=None, closed_form=True) -> None:  # fmt: skip
        """:meth:`learn`; the closed-form candidate counts the first ``new`` rows (the
        chunk's; None, or with ``refresh``: all), drawing from ``gen``; then serve the
        candidate with the lowest running error (:meth:`_pick`; the closed-form one only
        when ``closed_form``) as ``head``."""
        self.learn(feats, y, w, steps, mask, lr, weight_decay, decoupled)
        if self.lda is not None:
            k = len(y) if new is None or self.refresh else new
            self.lda = self.lda.added(feats[:k], y[:k], None if w is None else w[:k], gen)
        self._pick(mask, closed_form)
        if self.current == len(self.rates):
            self.lda.serve(head)
            return
        head.weight.copy_(self.weight[self.current])
        head.bias.copy_(self.bias[self.current])

    @torch.no_grad()
    def train_through(self, head) -> None:
        """Before the trunk's steps: while the closed-form candidate serves, ``head``
        takes the weights of the copy with the lowest running error, through which the
        trunk learns (the closed-form weights, of another scale, are not a head to
        learn through); :meth:`fine_tune` serves the closed-form one again after."""
        k = len(self.rates)
        if self.weight is None or self.current < k:
            return
        best = int(np.argmin(self.errors[:k]))
        head.weight.copy_(self.weight[best])
        head.bias.copy_(self.bias[best])

    def forget(self, classes) -> None:
        """The concept changed for ``classes``: the closed-form candidate drops their
        means (as the replay memory their rows); a served one that no longer has rows
        of every class hands over to the best copy at the next pick."""
        if self.lda is not None and len(classes):
            self.lda = self.lda.dropped(classes)

    @torch.no_grad()
    def learn(self, feats, y, w, steps, mask, lr, weight_decay, decoupled) -> None:
        """``steps`` full-batch Adam steps (AdamW's decay when ``decoupled``) of every
        copy on fixed features, each at its multiple of ``lr``, with the closed-form
        cross-entropy gradient of :func:`~skocl._steps.fine_tune_head` (all copies' in
        one matrix product) and torch's fused Adam kernel (a call per copy: 3 steps of
        3 copies took 405 µs as a dozen tensor operations each, about 200 µs less
        through the kernel). A copy whose weights end up non-finite keeps those it
        had."""
        k, c, h = self.weight.shape
        n = y.shape[0]
        scale = w / w.sum() if w is not None else feats.new_full((n,), 1.0 / n)
        # Classes by rows (the layout of fine_tune_head): the softmax over the classes,
        # a short middle axis, vectorises over the rows.
        labels, minus_one = y[None, None, :].expand(k, 1, n), feats.new_full((k, 1, n), -1.0)
        mask_t = None if mask is None else mask[:, None]
        weight, bias = self.weight.clone(), self.bias.clone()
        moments = [m.clone() for m in self.moments]
        # Each copy's Adam steps through torch's fused kernel (the kernel of the head's
        # optimizer), one call per copy at its own rate, on the copy's rows of the
        # stacked tensors; each copy keeps its own step count (the kernel reads it, so
        # a copy's weight and bias share one).
        counts = torch.tensor(self.steps, dtype=torch.float32, device=feats.device)
        copies = [
            ([wj, bj], [mw, mb], [vw, vb], [cj, cj], lr * rate)
            for wj, bj, mw, mb, vw, vb, cj, rate in zip(
                weight.unbind(0), bias.unbind(0), *(m.unbind(0) for m in moments),
                counts.unbind(0), self.rates,
            )
        ]  # fmt: skip
        self.steps = self.steps + steps  # replaced, not changed: a checkpoint keeps the old
        for _ in range(steps):
            z_t = torch.addmm(bias.reshape(-1, 1), weight.reshape(k * c, h), feats.t())
            z_t = z_t.view(k, c, n)
            G_t = torch.softmax(z_t if mask_t is None else z_t + mask_t, dim=1)
            G_t = G_t.scatter_add_(1, labels, minus_one).mul_(scale)
            grads = zip(
                (G_t.reshape(k * c, n) @ feats).view(k, c, h).unbind(0), G_t.sum(2).unbind(0)
            )  # fmt: skip
            counts.add_(1)
            for (params, exp_avgs, exp_avg_sqs, steps_j, lr_j), grad in zip(copies, grads):
                adam_kernel(
                    params, list(grad), exp_avgs, exp_avg_sqs, steps_j, lr_j, BETAS,
                    weight_decay, EPS, decoupled,
                )  # fmt: skip
        if all_finite([weight, bias]):
            self.weight, self.bias, self.moments = weight, bias, moments
            return
        finite = torch.isfinite(weight.sum((1, 2)) + bias.sum(1)).tolist()
        keep = torch.tensor(finite, device=weight.device)  # others keep their weights
        weight = torch.where(keep[:, None, None], weight, self.weight)
        bias = torch.where(keep[:, None], bias, self.bias)
        moments = [
            torch.where(keep.view(-1, *[1] * (new.dim() - 1)), new, old)
            for new, old in zip(moments, self.moments)
        ]
        self.weight, self.bias, self.moments = weight, bias, moments

    def _pick(self, mask=None, closed_form=True) -> None:
        k = len(self.rates)
        errors = self.errors
        if self.lda is not None and not (closed_form and self.lda.covers(mask)):
            errors = errors[:k]  # it cannot serve every class
            if self.current == k:
                self.current = int(np.argmin(errors))
                return
        if self.scored < 2:
            return
        best = int(np.argmin(errors))
        p = min(max(float(self.errors[self.current]), 1e-3), 1 - 1e-3)
        if self.errors[self.current] - self.errors[best] > SWITCH_Z * math.sqrt(
            p * (1 - p) / max(self.rows, 1.0)
        ):
            self.current = best

    def grow(self, growth) -> None:
        """Each copy's known classes keep their rows and moments; new classes start
        from the grown head's fresh rows, with zero moments."""
        if self.weight is None:
            return
        idx = torch.as_tensor(growth.positions, device=growth.device)
        weight, bias = self._start_rows(*(new.detach() for _, new in growth.pairs))
        weight[:, idx] = self.weight
        bias[:, idx] = self.bias
        moments = []
        for m, like in zip(self.moments, (weight, bias) * 2):
            padded = torch.zeros_like(like)
            padded[:, idx] = m
            moments.append(padded)
        self.weight, self.bias, self.moments = weight, bias, moments
        if self.lda is not None:
            self.lda = self.lda.grown(growth.positions, growth.n_classes)

    def _start_rows(self, weight, bias) -> tuple[torch.Tensor, torch.Tensor]:
        """Every copy's rows of the grown head before its known classes are put back:
        the grown head's own (new classes start as a fresh ``nn.Linear`` row would)."""
        k = len(self.rates)
        return weight.unsqueeze(0).repeat(k, 1, 1), bias.unsqueeze(0).repeat(k, 1)

    def state_dict(self) -> dict:
        return {
            "rates": list(self.rates),
            "lda": None if self.lda is None else self.lda.state_dict(),
            "weight": self.weight,
            "bias": self.bias,
            "moments": self.moments,
            "steps": self.steps.tolist(),
            "errors": self.errors.tolist(),
            "current": self.current,
            "scored": self.scored,
            "rows": self.rows,
            "off": self.off,
            "refresh": self.refresh,
        }

    def load_state_dict(self, state: dict | None, device) -> None:
        """Restore what :meth:`state_dict` wrote. A file without it, written before
        the head had several rates, keeps ``head_lr`` alone, as the model learned until
        then; one written with other ``head_rates`` starts the copies at the next
        update."""
        if state is None:
            self.off = True
            return
        rates, refresh = tuple(state["rates"]), bool(state.get("refresh", False))
        if rates != self.rates and not (refresh and set(rates) <= set(self.rates)):
            return
        self.rates = rates  # started at a concept change: one of them
        if state["weight"] is not None:
            self.weight, self.bias = state["weight"].to(device), state["bias"].to(device)
            self.moments = [m.to(device) for m in state["moments"]]
        # A file of an earlier format 5 holds one count, shared by every copy.
        steps = np.asarray(state["steps"], dtype=np.int64)
        self.steps = np.broadcast_to(steps, (len(self.rates),)).copy()
        saved, k = np.asarray(state["errors"], dtype=float), len(self.rates)
        lda = state.get("lda")  # none in a file written before the closed-form head
        self.lda = None
        if self.wants_lda and state["weight"] is not None:
            if lda is None:  # it starts empty, counting the chunks from here
                c, h = self.weight.shape[1:]
                self.lda = StreamingLDA.empty(c, h, device)
            else:
                self.lda = StreamingLDA.from_state_dict(lda, device)
        self.errors = saved[:k]
        if self.wants_lda:  # a file without its error: it has to earn its place
            self.errors = np.append(self.errors, saved[k] if len(saved) > k else 1.0)
        self.current = int(state["current"])
        if self.current >= len(self.errors):
            self.current = int(np.argmin(self.rates))
        self.scored = int(state["scored"])
        self.rows = float(state["rows"])
        self.off = bool(state["off"])
        self.refresh = refresh  # none in an older file


def _logits(weight, bias, feats) -> torch.Tensor:
    """Every copy's logits, ``(n, n_rates, n_classes)``, in one matrix product."""
    k, c, h = weight.shape
    return torch.addmm(bias.reshape(-1), feats, weight.reshape(k * c, h).t()).view(-1, k, c)


def check_head_rates(rates) -> tuple:
    """``head_rates`` as a tuple of floats (and ``"lda"`` once, kept), or an error
    naming the entry that is neither a positive finite number nor ``"lda"``."""
    rates = tuple(rates)
    out = []
    for i, rate in enumerate(rates):
        if isinstance(rate, str) and rate == LDA and LDA not in out:
            out.append(LDA)
            continue
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float, np.number))
            or not (math.isfinite(rate) and rate > 0)
        ):
            raise ValueError(
                f"head_rates[{i}] is {rate!r}: each entry must be a positive finite "
                "multiple of head_lr, or 'lda' (once)."
            )
        out.append(float(rate))
    if not any(r != LDA for r in out):
        raise ValueError(f"head_rates must hold at least one multiple of head_lr; got {rates!r}.")
    return tuple(out)
