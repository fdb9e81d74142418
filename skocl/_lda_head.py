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
# rows beyond it): its cost is rows x width^2 (0.35 ms for 256 rows at width 256).
COVARIANCE_ROWS = 256
# The statistics weigh at most this many rows: beyond it all of them are scaled down, so
# that rows whose features came from an older trunk weigh less and less.
MAX_ROWS = 10_000.0
# The weights are solved again (a Cholesky factorisation, about 0.5 ms at width 256)
# once rows weighing this share of the statistics, or RESOLVE_ROWS, have joined, and
# when a class has its first rows.
RESOLVE_SHARE = 0.1
RESOLVE_ROWS = 256


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
        outer products (float64).
    weight, bias : Tensor or None
        The solved head (the features' dtype; rows of classes without rows are zero),
        None before the first solve.
    pending : float
        Weight of the rows joined since the last solve.
    """

    def __init__(self, counts, sums, cov_counts, cov_sums, scatter, weight=None, bias=None,
                 pending=0.0) -> None:  # fmt: skip
        self.counts, self.sums = counts, sums
        self.cov_counts, self.cov_sums, self.scatter = cov_counts, cov_sums, scatter
        self.weight, self.bias = weight, bias
        self.pending = float(pending)

    @classmethod
    def empty(cls, n_classes: int, width: int, device) -> StreamingLDA:
        zeros = dict(dtype=torch.float64, device=device)
        return cls(
            torch.zeros(n_classes, **zeros), torch.zeros(n_classes, width, **zeros),
            torch.zeros(n_classes, **zeros), torch.zeros(n_classes, width, **zeros),
            torch.zeros(width, width, **zeros),
        )  # fmt: skip

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
    def added(self, feats, y, w, gen, cov_rows=COVARIANCE_ROWS) -> StreamingLDA:
        """With the rows ``feats`` (their class indices ``y``, weights ``w`` or None)
        joined; their covariance from at most ``cov_rows`` of them (drawn from ``gen``;
        None: all). Solved again when enough rows have joined."""
        n = len(y)
        if n == 0:
            return self
        wf = feats if w is None else feats * w[:, None]
        counts = self.counts + _bincount(y, w, len(self.counts))
        sums = self.sums.index_add(0, y, wf.to(torch.float64))
        pick = slice(None)
        if cov_rows is not None and n > cov_rows:
            pick = torch.randperm(n, generator=gen)[:cov_rows].to(y.device)
        fs, ys, wfs = feats[pick], y[pick], wf[pick]
        ws = None if w is None else w[pick]
        cov_counts = self.cov_counts + _bincount(ys, ws, len(self.counts))
        cov_sums = self.cov_sums.index_add(0, ys, wfs.to(torch.float64))
        scatter = self.scatter + (wfs.t() @ fs).to(torch.float64)
        joined = float(counts.sum() - self.counts.sum())
        out = StreamingLDA(
            counts, sums, cov_counts, cov_sums, scatter, self.weight, self.bias,
            self.pending + joined,
        )  # fmt: skip
        total = float(counts.sum())
        if total > MAX_ROWS:
            out = out._scaled(MAX_ROWS / total)
        new_class = bool(((counts > 0) & (self.counts <= 0)).any())
        due = out.pending >= min(RESOLVE_SHARE * total, RESOLVE_ROWS)
        if out.weight is None or new_class or due:  # a class's first rows: its weights
            out = out._solved(feats.dtype)
        return out

    def _scaled(self, factor: float) -> StreamingLDA:
        return StreamingLDA(
            self.counts * factor, self.sums * factor, self.cov_counts * factor,
            self.cov_sums * factor, self.scatter * factor, self.weight, self.bias,
            self.pending,
        )  # fmt: skip

    def _solved(self, dtype) -> StreamingLDA:
        """The head solved from the statistics (unchanged if they cannot be: no class
        with rows, or a covariance that is not positive definite even shrunk)."""
        has = self.classes
        if not bool(has.any()):
            return self
        mu = self.sums[has] / self.counts[has, None]
        cov_has = self.cov_counts > 0
        within = self.scatter - (
            self.cov_sums[cov_has].t() @ (self.cov_sums[cov_has] / self.cov_counts[cov_has, None])
        )
        dof = float(self.cov_counts.sum()) - int(cov_has.sum())
        width = within.shape[0]
        cov = within / max(dof, 1.0)
        scale = float(torch.trace(cov)) / width
        if not (math.isfinite(scale) and scale > 0):
            scale = 1.0
        shrunk = (1 - SHRINKAGE) * cov
        shrunk.diagonal().add_(SHRINKAGE * scale)
        chol, info = torch.linalg.cholesky_ex(shrunk)
        if int(info):
            return self
        coef = torch.cholesky_solve(mu.t(), chol).t()  # (classes with rows, width)
        weight = torch.zeros(len(has), width, dtype=dtype, device=mu.device)
        bias = torch.zeros(len(has), dtype=dtype, device=mu.device)
        weight[has] = coef.to(dtype)
        bias[has] = (-0.5 * (coef * mu).sum(1)).to(dtype)
        if not bool(torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            return self
        return StreamingLDA(
            self.counts, self.sums, self.cov_counts, self.cov_sums, self.scatter, weight,
            bias, 0.0,
        )  # fmt: skip

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
        out = StreamingLDA(
            self.counts * keep, self.sums * keep[:, None], self.cov_counts, self.cov_sums,
            self.scatter, self.weight, self.bias,
        )  # fmt: skip
        return out._solved(self.weight.dtype) if self.weight is not None else out

    def grown(self, positions, n_classes: int) -> StreamingLDA:
        """Old class ``i`` at ``positions[i]`` of ``n_classes``; new classes without
        rows."""
        idx = torch.as_tensor(positions, device=self.counts.device)

        def pad(t, fill=0.0):
            out = t.new_full((n_classes, *t.shape[1:]), fill)
            out[idx] = t
            return out

        weight = None if self.weight is None else pad(self.weight)
        bias = None if self.bias is None else pad(self.bias)
        return StreamingLDA(
            pad(self.counts), pad(self.sums), pad(self.cov_counts), pad(self.cov_sums),
            self.scatter, weight, bias, self.pending,
        )  # fmt: skip

    def state_dict(self) -> dict:
        return {
            "counts": self.counts, "sums": self.sums, "cov_counts": self.cov_counts,
            "cov_sums": self.cov_sums, "scatter": self.scatter, "weight": self.weight,
            "bias": self.bias, "pending": self.pending,
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict, device) -> StreamingLDA:
        def to(t):
            return None if t is None else t.to(device)

        return cls(
            to(state["counts"]), to(state["sums"]), to(state["cov_counts"]),
            to(state["cov_sums"]), to(state["scatter"]), to(state["weight"]),
            to(state["bias"]), state["pending"],
        )  # fmt: skip


def _bincount(y, w, n: int) -> torch.Tensor:
    return torch.bincount(y, weights=None if w is None else w.double(), minlength=n).to(
        torch.float64
    )
