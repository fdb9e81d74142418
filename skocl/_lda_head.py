"""A closed-form candidate for the head: streaming linear discriminant analysis on the
trunk's features (Deep SLDA; Hayes and Kanan, "Lifelong Machine Learning with Deep
Streaming Linear Discriminant Analysis", CVPR Workshops 2020)."""

from __future__ import annotations

import math

import torch

# Shrinkage of the features' covariance toward its mean variance:
# (1 - SHRINKAGE) * cov + SHRINKAGE * trace(cov) / width * I. Chosen by
# benchmarks/bench_head_rates.py --shrinkage (DEFAULTS.md, "a closed-form head"; the
# quickstart, a stationary stream and river's six generators after a fit): 1e-4, 1e-2
# and 1e-1 gave quickstart drops of 0.009, 0.004 and 0.008 and river means of 0.855,
# 0.858 and 0.855; 1e-1 led on the stationary stream (0.746 against 0.730).
SHRINKAGE = 1e-2
# Most rows of an update whose features join the covariance (a uniform sample of the
# rows beyond it): their outer products cost rows x width^2 (0.35 ms for 256 rows at
# width 256).
COVARIANCE_ROWS = 256
# The statistics weigh at most this many rows: beyond it all of them are scaled down, so
# that rows whose features came from an older trunk weigh less and less.
MAX_ROWS = 10_000.0
# The rows' weight kept by a candidate that started at a concept change of a model
# learning from scratch (HeadRates.start_at_change): its trunk still learns, so older
# features go stale sooner. Chosen at issue 10's 20,000-row river protocol (5 seeds;
# DEFAULTS.md, "Candidates at a concept change"; three copies, solves every tenth):
# 1,000, 2,000, 4,000 and 10,000 gave prequential means of 0.877, 0.876, 0.874 and
# 0.872 (Sine 0.958, 0.954, 0.945, 0.936). 1,000 (with solves every half) cost
# class-incremental digits' new classes 0.976 to 0.958: ten classes share the rows.
REFRESH_ROWS = 2_000.0
# Such a candidate is solved again once rows weighing this share of its statistics have
# joined (RESOLVE_SHARE for the others): a 32-row call after a concept change cost 1.90
# times one without candidates with 0.1, most of it in solves every fourth call, 1.67
# with 0.25 (bench_after_change.py), and the protocol above read 0.8753 against 0.876.
REFRESH_SHARE = 0.25
# The weights are solved again (a Cholesky factorisation, about 0.5 ms at width 256)
# once rows weighing this share of the statistics, or RESOLVE_ROWS, have joined, and
# when a class has its first rows. RESOLVE_ROWS 1,024 rather than 256: a 32-row call
# after a fit cost 2,620 against 2,008 us without the candidate (bench_ab.py), with
# 1,024 the same bench_head_rates.py numbers to the third decimal but the stationary
# stream's end (0.729 against 0.730).
RESOLVE_SHARE = 0.1
RESOLVE_ROWS = 1024
# COVARIANCE_ROWS and the rows between solves are for features of this width (the
# default trunk's). For a wider head input w, COVARIANCE_ROWS * (256 / w)^2 rows (at
# least 16) join the covariance a call and (w / 256)^3 times as many rows come between
# solves: a call's outer products and a row's share of a solve (width^3) cost what they
# cost at 256. With the bounds of width 256 kept, a 2,000-row call of a 1,024-wide
# trunk cost 2.9 times the copies' alone (DEFAULTS.md, "a closed-form head").
REFERENCE_WIDTH = 256


def covariance_rows(width: int) -> int:
    return max(16, round(COVARIANCE_ROWS * (REFERENCE_WIDTH / width) ** 2))


def solve_spacing(width: int) -> float:
    """How many times more rows come between solves than at ``REFERENCE_WIDTH``."""
    return max(1.0, width / REFERENCE_WIDTH) ** 3


class StreamingLDA:
    """Linear discriminant analysis of the trunk's features, kept as running sums: per
    class the weight of its rows and the sum of their features, and the features'
    within-class scatter. Its head has weights ``mu_c^T S^-1`` and bias
    ``-mu_c^T S^-1 mu_c / 2`` per class ``c`` (equal priors, as Deep SLDA: a class seen
    less is not predicted less), ``S`` the shrunk within-class covariance.

    A head fitted in closed form to every row it has seen learns what a fine-tune of a
    few steps a chunk does not: on the README quickstart it ends where ``fit`` on all the
    rows does. The learner scores it beside the head's copies
    (:class:`~skocl._head_rates.HeadRates`), which serve it only while it predicts the
    coming chunks better.

    The rows sampled for the covariance wait in ``buffer`` and join the scatter at the
    next solve: a call costs its rows times the width, and the width-squared work (the
    rows' outer products, the scatter's sums) is done once a solve.

    Every method that changes it returns a new object: a checkpoint keeps the old one
    by reference.

    Attributes
    ----------
    counts : Tensor of shape (n_classes,)
        Weight of each class's rows (float64).
    sums : Tensor of shape (n_classes, width)
        Sum of each class's rows' features, weighted (float64).
    cov_counts, cov_sums, scatter : Tensor
        The same of the rows sampled for the covariance, and the sum of their features'
        outer products, weighted (float64), as of the last solve.
    buffer : tuple
        ``(feats, y, w)`` of each call's rows sampled for the covariance since the last
        solve (``w`` None: all weigh one).
    weight, bias : Tensor or None
        The solved head (the features' dtype; rows of classes without rows are zero),
        None before the first solve.
    pending : float
        Weight of the rows joined since the last solve.
    max_rows : float or None
        The most rows' weight the statistics keep (None: ``MAX_ROWS``).
    share : float or None
        The share of the statistics' weight that joins between solves (None:
        ``RESOLVE_SHARE``).
    """

    def __init__(self, counts, sums, cov_counts, cov_sums, scatter, weight=None, bias=None,
                 pending=0.0, buffer=(), max_rows=None, share=None) -> None:  # fmt: skip
        self.counts, self.sums = counts, sums
        self.cov_counts, self.cov_sums, self.scatter = cov_counts, cov_sums, scatter
        self.weight, self.bias = weight, bias
        self.pending = float(pending)
        self.buffer = tuple(buffer)
        self.max_rows = None if max_rows is None else float(max_rows)
        self.share = None if share is None else float(share)

    @classmethod
    def empty(cls, n_classes: int, width: int, device, max_rows=None, share=None) -> StreamingLDA:
        zeros = dict(dtype=torch.float64, device=device)
        return cls(
            torch.zeros(n_classes, **zeros), torch.zeros(n_classes, width, **zeros),
            torch.zeros(n_classes, **zeros), torch.zeros(n_classes, width, **zeros),
            torch.zeros(width, width, **zeros), max_rows=max_rows, share=share,
        )  # fmt: skip

    def _with(self, **changes) -> StreamingLDA:
        fields = dict(
            counts=self.counts, sums=self.sums, cov_counts=self.cov_counts,
            cov_sums=self.cov_sums, scatter=self.scatter, weight=self.weight,
            bias=self.bias, pending=self.pending, buffer=self.buffer, max_rows=self.max_rows,
            share=self.share,
        )  # fmt: skip
        return StreamingLDA(**{**fields, **changes})

    @property
    def classes(self) -> torch.Tensor:
        """Whether each class has rows."""
        return self.counts > 0

    def covers(self, mask) -> bool:
        """Whether the solved head has rows for every class ``mask`` lets through (None:
        every class)."""
        if self.weight is None:
            return False
        has = self.classes
        if mask is not None:
            has = has | torch.isinf(mask)
        return bool(has.all())

    @torch.no_grad()
    def added(self, feats, y, w, gen, cov_rows=-1) -> StreamingLDA:
        """With the rows ``feats`` (their class indices ``y``, weights ``w`` or None)
        joined; their covariance from at most ``cov_rows`` of them (drawn from ``gen``;
        None: all; -1: :func:`covariance_rows` of the width). Solved again when enough
        rows have joined, or a class has its first rows."""
        n = len(y)
        if n == 0:
            return self
        if cov_rows == -1:
            cov_rows = covariance_rows(self.scatter.shape[0])
        wf = feats if w is None else feats * w[:, None]
        counts = self.counts + _bincount(y, w, len(self.counts))
        # Summed per class in the features' dtype, then added in float64: a chunk's
        # rows are not converted one by one.
        chunk_sums = wf.new_zeros(self.sums.shape).index_add_(0, y, wf)
        sums = self.sums + chunk_sums.to(torch.float64)
        if cov_rows is not None and n > cov_rows:
            pick = torch.randperm(n, generator=gen)[:cov_rows].to(y.device)
            feats, y, w = feats[pick], y[pick], None if w is None else w[pick]
        else:  # copies: the buffer must not hold views of the caller's larger tensors
            feats, y, w = feats.clone(), y.clone(), None if w is None else w.clone()
        joined = float(n if w is None else w.sum())
        out = self._with(
            counts=counts, sums=sums, pending=self.pending + joined,
            buffer=(*self.buffer, (feats, y, w)),
        )  # fmt: skip
        total, width = float(counts.sum()), self.scatter.shape[0]
        new_class = bool(((counts > 0) & (self.counts <= 0)).any())
        share = RESOLVE_SHARE if self.share is None else self.share
        due = out.pending >= min(share * total, RESOLVE_ROWS) * solve_spacing(width)
        if out.weight is None or new_class or due:  # a class's first rows: its weights
            out = out._solved(feats.dtype)
        return out

    def _folded(self) -> StreamingLDA:
        """The buffer joined to the covariance's statistics, and every statistic scaled
        down to weigh ``max_rows`` rows when it weighs more."""
        out = self
        if self.buffer:
            feats, y, w = self._buffered()
            wf = feats if w is None else feats * w[:, None]
            out = self._with(
                cov_counts=self.cov_counts + _bincount(y, w, len(self.counts)),
                cov_sums=self.cov_sums.index_add(0, y, wf.to(torch.float64)),
                scatter=self.scatter + (wf.t() @ feats).to(torch.float64),
                buffer=(),
            )  # fmt: skip
        total, limit = float(out.counts.sum()), self.max_rows or MAX_ROWS
        if total > limit:
            f = limit / total
            out = out._with(
                counts=out.counts * f, sums=out.sums * f, cov_counts=out.cov_counts * f,
                cov_sums=out.cov_sums * f, scatter=out.scatter * f,
            )  # fmt: skip
        return out

    def _buffered(self) -> tuple:
        """The buffer's rows as one ``(feats, y, w)`` (``w`` None when all weigh one)."""
        feats = torch.cat([f for f, _, _ in self.buffer])
        y = torch.cat([t for _, t, _ in self.buffer])
        w = None
        if any(b is not None for _, _, b in self.buffer):
            w = torch.cat([feats.new_ones(len(t)) if b is None else b for _, t, b in self.buffer])
        return feats, y, w

    def _solved(self, dtype) -> StreamingLDA:
        """The buffer folded in and the head solved from the statistics (the old head
        kept if it cannot be: no class with rows, or a covariance that is not positive
        definite even shrunk)."""
        out = self._folded()
        has = out.classes
        if not bool(has.any()):
            return out
        mu = out.sums[has] / out.counts[has, None]
        cov_has = out.cov_counts > 0
        within = out.scatter - (
            out.cov_sums[cov_has].t() @ (out.cov_sums[cov_has] / out.cov_counts[cov_has, None])
        )
        dof = float(out.cov_counts.sum()) - int(cov_has.sum())
        width = within.shape[0]
        cov = within / max(dof, 1.0)
        scale = float(torch.trace(cov)) / width
        if not (math.isfinite(scale) and scale > 0):
            scale = 1.0
        shrunk = (1 - SHRINKAGE) * cov
        shrunk.diagonal().add_(SHRINKAGE * scale)
        chol, info = torch.linalg.cholesky_ex(shrunk)
        if int(info):
            return out
        coef = torch.cholesky_solve(mu.t(), chol).t()  # (classes with rows, width)
        weight = torch.zeros(len(has), width, dtype=dtype, device=mu.device)
        bias = torch.zeros(len(has), dtype=dtype, device=mu.device)
        weight[has] = coef.to(dtype)
        bias[has] = (-0.5 * (coef * mu).sum(1)).to(dtype)
        if not bool(torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            return out
        return out._with(weight=weight, bias=bias, pending=0.0)

    @torch.no_grad()
    def predict(self, feats, mask) -> torch.Tensor:
        """Class indices (-1 for every row before the first solve, or when no class
        ``mask`` lets through has rows)."""
        n = feats.shape[0]
        if self.weight is None:
            return torch.full((n,), -1, dtype=torch.long, device=feats.device)
        has = self.classes if mask is None else self.classes & ~torch.isinf(mask)
        idx = torch.nonzero(has).flatten()
        if len(idx) == 0:
            return torch.full((n,), -1, dtype=torch.long, device=feats.device)
        z = torch.addmm(self.bias[idx], feats, self.weight[idx].t())
        return idx[z.argmax(1)]

    @torch.no_grad()
    def serve(self, head) -> None:
        """Write the solved head into ``head`` (a plain ``nn.Linear``): the rows of the
        classes it has rows for; the others keep the head's."""
        has = self.classes
        head.weight[has] = self.weight[has]
        head.bias[has] = self.bias[has]

    def dropped(self, classes) -> StreamingLDA:
        """Without the means of ``classes`` (class indices): the concept changed for
        them (the replay memory drops their rows too). Their rows stay in the
        covariance, which is of the features, not of the labels."""
        keep = torch.ones(len(self.counts), dtype=torch.float64, device=self.counts.device)
        keep[torch.as_tensor(classes, device=keep.device)] = 0.0
        out = self._with(counts=self.counts * keep, sums=self.sums * keep[:, None])
        return out._solved(self.weight.dtype) if self.weight is not None else out

    def grown(self, positions, n_classes: int) -> StreamingLDA:
        """Old class ``i`` at ``positions[i]`` of ``n_classes``; new classes without
        rows."""
        idx = torch.as_tensor(positions, device=self.counts.device)

        def pad(t):
            out = t.new_zeros((n_classes, *t.shape[1:]))
            out[idx] = t
            return out

        buffer = tuple((f, idx[t], b) for f, t, b in self.buffer)
        return self._with(
            counts=pad(self.counts), sums=pad(self.sums), cov_counts=pad(self.cov_counts),
            cov_sums=pad(self.cov_sums), buffer=buffer,
            weight=None if self.weight is None else pad(self.weight),
            bias=None if self.bias is None else pad(self.bias),
        )  # fmt: skip

    def state_dict(self) -> dict:
        buffer = None
        if self.buffer:
            buffer = dict(zip(("feats", "y", "w"), self._buffered()))
        return {
            "counts": self.counts, "sums": self.sums, "cov_counts": self.cov_counts,
            "cov_sums": self.cov_sums, "scatter": self.scatter, "weight": self.weight,
            "bias": self.bias, "pending": self.pending, "buffer": buffer,
            "max_rows": self.max_rows, "share": self.share,
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict, device) -> StreamingLDA:
        def to(t):
            return None if t is None else t.to(device)

        buffer = state.get("buffer")
        return cls(
            to(state["counts"]), to(state["sums"]), to(state["cov_counts"]),
            to(state["cov_sums"]), to(state["scatter"]), to(state["weight"]),
            to(state["bias"]), state["pending"],
            () if buffer is None else ((to(buffer["feats"]), to(buffer["y"]), to(buffer["w"])),),
            state.get("max_rows"), state.get("share"),  # none in a file written before them
        )  # fmt: skip


def _bincount(y, w, n: int) -> torch.Tensor:
    return torch.bincount(y, weights=None if w is None else w.double(), minlength=n).to(
        torch.float64
    )
