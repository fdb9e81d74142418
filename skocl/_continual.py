"""Torch side of continual learning: replay memory, anchors for L2-SP and EWC, fusion.

The estimator decides when each is used; the update rule in ``_network.online_update``
mixes replayed rows into its steps and applies the anchor's penalty to the trunk.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ReplayMemory:
    """A bounded memory of past rows, replayed alongside new data (rehearsal).

    ``strategy="reservoir"`` keeps a uniform sample of every row seen (Vitter's
    Algorithm R; Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual
    Learning"). ``strategy="class_balanced"`` gives each class seen an equal share of
    the capacity and keeps a uniform sample of that class's rows in it, so rare and old
    classes stay represented.

    Rows are kept as dense tensors on the model's device; labels as class indices.
    """

    def __init__(self, capacity: int, strategy: str, n_features: int, dtype, device) -> None:
        self.capacity, self.strategy = capacity, strategy
        self.X = torch.empty((0, n_features), dtype=dtype, device=device)
        self.y = torch.empty((0,), dtype=torch.long, device=device)
        self.seen = torch.zeros(0, dtype=torch.long)  # rows seen per class index

    def __len__(self) -> int:
        return self.y.shape[0]

    def sample(self, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` rows drawn uniformly with replacement."""
        idx = torch.randint(len(self), (k,), generator=gen).to(self.y.device)
        return self.X[idx], self.y[idx]

    def add(self, X: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> None:
        """Offer the rows of a chunk to the memory."""
        n_classes = int(y.max()) + 1 if len(y) else 0
        if n_classes > len(self.seen):
            self.seen = torch.cat(
                [self.seen, torch.zeros(n_classes - len(self.seen), dtype=torch.long)]
            )
        if self.strategy == "reservoir":
            every_slot = torch.ones(len(self), dtype=torch.bool, device=self.y.device)
            self._reservoir(X, y, every_slot, self.capacity, gen)
            self.seen += torch.bincount(y, minlength=len(self.seen)).cpu()
            return
        present = torch.unique(y).cpu()
        active = int(((self.seen > 0) | torch.isin(torch.arange(len(self.seen)), present)).sum())
        quota = max(self.capacity // max(active, 1), 1)
        self._shrink_to(quota, gen)
        for c in present.tolist():
            mask = y == c
            self._reservoir(X[mask], y[mask], self.y == c, quota, gen, seen=int(self.seen[c]))
            self.seen[c] += int(mask.sum())

    def _reservoir(self, X, y, slots_mask, quota, gen, seen=None) -> None:
        """Algorithm R over the memory slots selected by ``slots_mask`` (capacity
        ``quota``), for ``seen`` rows seen before (all rows when None)."""
        seen = int(self.seen.sum()) if seen is None else seen
        slots = torch.nonzero(slots_mask).flatten()
        free = min(quota - len(slots), self.capacity - len(self), len(y))
        if free > 0:
            self.X = torch.cat([self.X, X[:free]])
            self.y = torch.cat([self.y, y[:free]])
            X, y, seen = X[free:], y[free:], seen + free
            slots = torch.cat(
                [slots, torch.arange(len(self) - free, len(self), device=slots.device)]
            )
        if not len(y) or not len(slots):
            return
        # Row t (1-based count of its kind) replaces slot j ~ U{0..t-1} when j < quota.
        t = torch.arange(seen + 1, seen + len(y) + 1, dtype=torch.float64)
        j = (torch.rand(len(y), generator=gen, dtype=torch.float64) * t).long()
        keep = j < len(slots)
        rows, j = torch.nonzero(keep).flatten(), j[keep]
        if not len(rows):
            return
        # When two rows pick one slot, the later one wins, as in the sequential algorithm.
        last = dict(zip(j.tolist(), rows.tolist()))
        target = slots[torch.tensor(list(last.keys()))]
        source = torch.tensor(list(last.values()), device=y.device)
        self.X[target] = X[source]
        self.y[target] = y[source]

    def _shrink_to(self, quota: int, gen: torch.Generator) -> None:
        """Drop rows of classes over ``quota``; a random subset of a uniform sample is
        still a uniform sample."""
        counts = torch.bincount(self.y, minlength=len(self.seen)).cpu()
        over = torch.nonzero(counts > quota).flatten().tolist()
        if not over:
            return
        keep = torch.ones(len(self), dtype=torch.bool, device=self.y.device)
        for c in over:
            idx = torch.nonzero(self.y == c).flatten()
            keep[idx[torch.randperm(len(idx), generator=gen)[quota:]]] = False
        self.X, self.y = self.X[keep], self.y[keep]

    def remap(self, positions) -> None:
        """Follow a grown label set: class ``i`` becomes ``positions[i]``."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        self.y = pos.to(self.y.device)[self.y]
        seen = torch.zeros(int(pos.max()) + 1 if len(pos) else 0, dtype=torch.long)
        seen[pos[: len(self.seen)]] = self.seen[: len(pos)]
        self.seen = seen

    def drop_classes(self, classes) -> None:
        """Forget the rows of these class indices (their counts start again)."""
        cls = torch.as_tensor(classes, dtype=torch.long)
        keep = ~torch.isin(self.y, cls.to(self.y.device))
        self.X, self.y = self.X[keep], self.y[keep]
        self.seen[cls[cls < len(self.seen)]] = 0

    def clear(self) -> None:
        self.X, self.y = self.X[:0], self.y[:0]
        self.seen.zero_()

    def state_dict(self) -> dict:
        return {"X": self.X.cpu(), "y": self.y.cpu(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict) -> None:
        device = self.X.device
        self.X, self.y = state["X"].to(device, self.X.dtype), state["y"].to(device)
        self.seen = state["seen"].clone()


class Anchor:
    r"""Pull of the trunk toward its pretrained weights :math:`\theta^*`.

    The penalty :math:`\frac{\lambda}{2}\sum_i F_i(\theta_i - \theta^*_i)^2` adds
    :math:`\lambda F \odot (\theta - \theta^*)` to the trunk's gradient. ``F = 1`` is
    L2-SP (Li et al. 2018, "Explicit Inductive Bias for Transfer Learning with
    Convolutional Networks"); ``F`` the diagonal empirical Fisher information is EWC
    (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks").
    """

    def __init__(self, params: list[nn.Parameter], fisher: list[torch.Tensor] | None) -> None:
        self.weights = [p.detach().clone() for p in params]
        self.fisher = fisher

    def grads(self, params, grads, strength: float):
        if self.fisher is None:
            return [
                g + strength * (p.detach() - w) for p, g, w in zip(params, grads, self.weights)
            ]
        return [
            g + strength * f * (p.detach() - w)
            for p, g, w, f in zip(params, grads, self.weights, self.fisher)
        ]

    def state_dict(self) -> dict:
        return {
            "weights": [w.cpu() for w in self.weights],
            "fisher": self.fisher and [f.cpu() for f in self.fisher],
        }

    @classmethod
    def from_state_dict(cls, state: dict, device) -> Anchor:
        anchor = cls.__new__(cls)
        anchor.weights = [w.to(device) for w in state["weights"]]
        anchor.fisher = (
            None if state["fisher"] is None else [f.to(device) for f in state["fisher"]]
        )
        return anchor


def empirical_fisher(
    trunk: nn.Module, head: nn.Module, params: list[nn.Parameter], X: torch.Tensor, y: torch.Tensor
) -> list[torch.Tensor]:
    """Diagonal empirical Fisher of the trunk: the mean over rows of the squared
    per-row gradient of the log-likelihood, normalised to mean 1 so that the EWC
    strength is on the same scale as L2-SP's."""
    fisher = [torch.zeros_like(p) for p in params]
    was_training = trunk.training
    trunk.eval()
    head.eval()
    for i in range(len(y)):
        loss = F.cross_entropy(head(trunk(X[i : i + 1])), y[i : i + 1])
        for f, g in zip(fisher, torch.autograd.grad(loss, params, materialize_grads=True)):
            f += g.detach() ** 2
    trunk.train(was_training)
    total = sum(f.sum() for f in fisher)
    count = sum(f.numel() for f in fisher)
    scale = count / total if total > 0 else 1.0
    return [f * scale for f in fisher]


@torch.no_grad()
def fuse(serving: list[torch.Tensor], current: list[torch.Tensor], weight: float) -> None:
    """``serving <- (1 - weight) * serving + weight * current``, in place."""
    for s, c in zip(serving, current):
        s.lerp_(c, weight)
