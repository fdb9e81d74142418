"""A memory head, which the library does not have: measured through ``bench_defaults.py``
with the learner patched for the run (issue 10, target 5a; DEFAULTS.md, "A memory head:
measured, not taken").

Every ``--every`` updates, the patched learner solves linear discriminant analysis (the
math of :class:`skocl._lda_head.StreamingLDA`, its shrinkage, every row in the
covariance, equal priors) on the trunk's features of the whole replay memory, as the
trunk is now; the covariance's factor is solved every ``--cov-every`` updates (default:
``--every``) and kept between, the means each time. The classes' means come from
the rows kept of every task, with features that are never stale (iCaRL's
nearest-mean-of-exemplars classifier is of this kind; Rebuffi et al., CVPR 2017). It
serves the head and that solution together: their logits summed, which is one linear
layer, so a prediction costs what it did. Each chunk is first scored by the head and by
the sum; the sum serves unless its running error (weight 0.5 on the newest chunk, as
:class:`~skocl._head_rates.HeadRates`) exceeds the head's by more than ``--gate-z``
binomial standard errors, and serves again once it is not above the head's. The drift
monitor is fed the head's errors (a switch of the served weights is no drift), and a
reaction that drops replay rows drops the solution, solved again at the end of that
update from the rows left.

Everything after ``--`` goes to ``bench_defaults.py``::

    python benchmarks/sweep_memory_head.py --every 8 -- --parts continual --no-peers \\
        --seeds 5 --no-baseline --candidate "memory_size=2000"
"""

from __future__ import annotations

import argparse
import copy
import importlib
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from skocl import _learner  # noqa: E402
from skocl._lda_head import SHRINKAGE  # noqa: E402

DECAY = 0.5


class MemoryHead:
    """The patched learner's state: the solution, the running errors, what serves."""

    def __init__(self) -> None:
        self.weight = self.bias = self.served = self.errors = self.factor = None
        self.factor_classes = 0
        self.updates = 0
        self.summed = False

    def solve(self, learner, cov_every: int) -> None:
        """LDA on the features of every memory row (float64): the classes' means now,
        the shrunk within-class covariance's factor now when due (every ``cov_every``
        updates, or none kept), else the one kept."""
        memory = learner.memory
        c, width = learner.head.weight.shape
        with torch.no_grad():
            feats = learner.trunk(memory.X).double()
        y = memory.y
        counts = torch.bincount(y, minlength=c).double()
        has = counts > 0
        sums = torch.zeros(c, width, dtype=feats.dtype).index_add_(0, y, feats)
        mu = sums[has] / counts[has, None]
        if self.factor is None or self.factor_classes != c or self.updates % cov_every == 0:
            within = feats.t() @ feats - sums[has].t() @ mu
            cov = within / max(len(y) - int(has.sum()), 1)
            scale = float(torch.trace(cov)) / width
            cov = (1 - SHRINKAGE) * cov
            cov.diagonal().add_(SHRINKAGE * scale)
            factor, info = torch.linalg.cholesky_ex(cov)
            if int(info):
                return
            self.factor, self.factor_classes = factor, c
        coef = torch.cholesky_solve(mu.t(), self.factor).t()
        self.weight = torch.zeros(c, width, dtype=memory.X.dtype)
        self.bias = torch.zeros(c, dtype=memory.X.dtype)
        self.weight[has] = coef.to(self.weight.dtype)
        self.bias[has] = (-0.5 * (coef * mu).sum(1)).to(self.bias.dtype)

    def score(self, learner, rows, gate_z: float) -> None:
        with torch.no_grad():
            feats = learner.trunk(rows.X)
            z = learner.head(feats)
            both = z + torch.addmm(self.bias, feats, self.weight.t())
            if learner.mask is not None:
                z, both = z + learner.mask, both + learner.mask
            errors = np.array(
                [float((z.argmax(1) != rows.y).float().mean()),
                 float((both.argmax(1) != rows.y).float().mean())]
            )  # fmt: skip
        self.errors = errors if self.errors is None else DECAY * self.errors + (1 - DECAY) * errors
        p = min(max(float(self.errors[1 if self.summed else 0]), 1e-3), 1 - 1e-3)
        margin = gate_z * math.sqrt(p * (1 - p) / len(rows.y))
        if self.summed and self.errors[1] - self.errors[0] > margin:
            self.summed = False
        elif not self.summed and self.errors[1] <= self.errors[0]:
            self.summed = True

    def serve(self, learner) -> None:
        self.served = None
        if self.weight is None or not self.summed:
            return
        if self.weight.shape != learner.head.weight.shape:
            return
        head = copy.deepcopy(learner.head)
        with torch.no_grad():
            head.weight.add_(self.weight)
            head.bias.add_(self.bias)
        self.served = head

    def drop(self) -> None:
        self.weight = self.bias = self.served = self.errors = self.factor = None
        self.summed = False


def patch(every: int, gate_z: float | None, cov_every: int) -> None:
    Learner = _learner.OnlineLearner
    update, watch, served = Learner.update, Learner._watch, Learner.served

    def state(self) -> MemoryHead:
        if getattr(self, "_memory_head", None) is None:
            self._memory_head = MemoryHead()
        return self._memory_head

    def _update(self, rows, **kwargs):
        if self.tasks is not None or self.sparse or not self.settings.memory_size:
            return update(self, rows, **kwargs)
        mh = state(self)
        if mh.weight is not None and mh.weight.shape == self.head.weight.shape:
            if gate_z is None:
                mh.summed = True
            else:
                mh.score(self, rows, gate_z)
        out = update(self, rows, **kwargs)
        mh.updates += 1
        if len(self.memory) and (mh.weight is None or mh.updates % every == 0):
            mh.solve(self, cov_every)
        mh.serve(self)
        return out

    def _watch(self, rows, s, seen, pred, fresh, positions):
        mh = state(self)
        held, kept = len(self.memory), mh.served
        mh.served = None  # the head's errors feed the monitor
        try:
            watch(self, rows, s, seen, pred, fresh, positions)
        finally:
            mh.served = kept
        if len(self.memory) < held:
            mh.drop()

    def _served(self):
        trunk, head = served.fget(self)
        mh = getattr(self, "_memory_head", None)
        if mh is not None and mh.served is not None and head is self.head:
            return trunk, mh.served
        return trunk, head

    Learner.update = _update
    Learner._watch = _watch
    Learner.served = property(_served)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=8, help="updates between solves")
    parser.add_argument(
        "--cov-every", type=int, help="updates between covariance solves (default: --every)"
    )
    parser.add_argument("--gate-z", type=float, default=1.0)
    parser.add_argument("--no-gate", action="store_true", help="the sum always serves")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    cov_every = args.cov_every or args.every
    patch(args.every, None if args.no_gate else args.gate_z, cov_every)
    gate = "none" if args.no_gate else f"z={args.gate_z:g}"
    print(
        f"memory head: means every {args.every} updates, covariance every {cov_every}, gate {gate}"
    )
    importlib.import_module("bench_defaults").main(argv[split + 1 :])


if __name__ == "__main__":
    main()
