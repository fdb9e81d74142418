"""Several tasks over one trunk: a head per task, their logits side by side, the joint
loss with missing labels, and the replay memory and drift watch of multi-output
labels.

Labels of several tasks travel as one ``(n_samples, n_tasks)`` int64 array of *global*
indices: task ``t``'s class ``c`` is ``offsets[t] + c``, a position in the heads'
joined logits, and ``-1`` is a missing label. Global indices let the machinery of one
task serve several unchanged: the mask of classes not shown yet, the growth of a label
set (a map of old to new global indices) and the replay memory's labels.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._continual import ReplayMemory
from ._drift import DriftMonitor

MISSING = -1


class TaskHeads(nn.Module):
    """One linear head per task over a shared trunk's features: the head of a network
    that learns several tasks (``y`` with a column per task).

    ``forward`` returns the tasks' logits side by side: task ``t``'s are columns
    ``offsets[t]:offsets[t + 1]``. Each head is its own ``nn.Linear`` with its own
    parameters, so a step of one task's loss moves only that head. The default network
    builds one for ``y`` with several columns; a module of your own learns several tasks
    when its head is one (one head per column of ``y``, each with one output per class).

    Parameters
    ----------
    heads : sequence of torch.nn.Linear
        The heads, in the order of the columns of ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from skocl import OnlineFineTuneClassifier, TaskHeads, TrunkHeadNet
    >>> net = TrunkHeadNet(nn.Sequential(nn.Linear(4, 16), nn.ReLU()),
    ...                    TaskHeads([nn.Linear(16, 3), nn.Linear(16, 2)]))
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(60, 4).astype("float32")
    >>> Y = np.column_stack([(X[:, 0] * 3).astype(int), X[:, 1] > 0.5])
    >>> clf = OnlineFineTuneClassifier(net, tol=1e-2, random_state=0).fit(X, Y)
    >>> clf.predict(X[:2]).shape, [len(c) for c in clf.classes_]
    ((2, 2), [3, 2])
    """

    def __init__(self, heads) -> None:
        super().__init__()
        heads = list(heads)
        for t, head in enumerate(heads):
            if not isinstance(head, nn.Linear):
                raise TypeError(
                    f"TaskHeads takes one nn.Linear per task; head {t} is a {type(head).__name__}."
                )
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The heads' logits, joined along the class axis: one matrix product with the
        heads' weights stacked (a call per head costs more than the product itself at
        the sizes of a head; gradients still reach each head's own parameters). The
        weights are read from each head's parameter dict: through ``nn.Module``'s
        attribute lookup they cost a quarter of the call. (Stacked weights are not kept
        between calls: a fused optimizer step changes a weight without bumping its
        version, so a cache could not tell it is stale.)"""
        params = [head._parameters for head in self.heads._modules.values()]
        if any(p["bias"] is None for p in params):
            return torch.cat([head(x) for head in self.heads], 1)
        weight = torch.cat([p["weight"] for p in params])
        return F.linear(x, weight, torch.cat([p["bias"] for p in params]))

    @property
    def sizes(self) -> list[int]:
        """Number of classes of each task."""
        return [head.out_features for head in self.heads]


class Tasks:
    """Where each task's logits sit in the joined output: ``bounds[t] = (start, stop)``.

    Parameters
    ----------
    sizes : list of int
        Number of classes of each task.
    """

    def __init__(self, sizes) -> None:
        self.sizes = list(sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.bounds = list(zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist()))

    def __len__(self) -> int:
        return len(self.sizes)

    def loss(self, logits, y, w=None, mask=None, tasks=None) -> torch.Tensor:
        """The sum over ``tasks`` (default all) of each task's cross-entropy, averaged
        (weighted by ``w``) over the rows that carry its label; a task without a label
        in the batch adds zero. ``mask`` as in :func:`~skocl._steps.weighted_loss`."""
        if mask is not None:
            logits = logits + mask
        total = logits.new_zeros(())
        for t in range(len(self)) if tasks is None else tasks:
            start, stop = self.bounds[t]
            yt = y[:, t]
            labelled = yt >= 0
            # ignore_index gives a missing label a loss and a gradient of exactly zero.
            target = torch.where(labelled, yt - start, -100)
            ce = F.cross_entropy(logits[:, start:stop], target, reduction="none")
            wt = labelled.to(logits.dtype) if w is None else w * labelled
            total = total + (ce * wt).sum() / wt.sum().clamp_min(1e-12)
        return total

    def argmax(self, logits):
        """Per task, the index (within the task's classes) of its largest logit:
        shape ``(n_samples, n_tasks)``; ``logits`` a tensor or a numpy array (whose
        argmax over a few columns costs a fraction of torch's per call)."""
        parts = [logits[:, start:stop].argmax(1) for start, stop in self.bounds]
        return torch.stack(parts, 1) if torch.is_tensor(logits) else np.stack(parts, 1)

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """``z`` (logits or probabilities of every task) cut into one block per task."""
        return [z[:, start:stop] for start, stop in self.bounds]

    def labelled(self, labels: np.ndarray) -> list[int]:
        """The tasks that some row of ``labels`` (host array) carries a label for."""
        return np.flatnonzero((labels >= 0).any(0)).tolist()

    def to_global(self, local: np.ndarray) -> np.ndarray:
        """Task-local class indices (``-1`` missing) as global ones."""
        return np.where(local >= 0, local + self.offsets[:-1], MISSING)


def label_map(old: Tasks, task: int, positions: np.ndarray, new: Tasks) -> np.ndarray:
    """Global index map of a growth of ``task``'s label set from ``old`` to ``new``
    sizes (its class ``i`` moving to ``positions[i]``): old global index -> new."""
    out = np.empty(old.offsets[-1], dtype=np.int64)
    for t, (start, stop) in enumerate(old.bounds):
        local = np.arange(stop - start)
        out[start:stop] = new.offsets[t] + (positions if t == task else local)
    return out


class TaskReplayMemory(ReplayMemory):
    """The replay memory for rows labelled for several tasks: ``y`` of shape
    ``(n_rows, n_tasks)`` holds every task's label of a row (``-1``: missing, and it
    stays missing when replayed).

    Rows are kept by reservoir sampling, a uniform sample of every row seen, whatever
    ``strategy`` says: a class-balanced share is defined for one label, and a row here
    carries several. ``seen`` counts rows.
    """

    # Task-balanced draws depend on their size: a draw per mini-batch, so that each
    # replays every labelled task.
    one_draw = False

    def __init__(self, capacity, strategy, n_features, dtype, device, n_tasks) -> None:
        super().__init__(capacity, "reservoir", n_features, dtype, device)
        self.y = torch.full((0, n_tasks), MISSING, dtype=torch.long, device=device)
        self.seen = torch.zeros(1, dtype=torch.long)

    @property
    def strategy(self) -> str:
        return "reservoir"

    @strategy.setter
    def strategy(self, value: str) -> None:
        """Rows of several tasks are always kept by reservoir sampling."""

    def sample(self, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` rows drawn with replacement, task-balanced: each task draws an equal
        share among the rows labelled for it, so a task labelled on few rows gets as many
        replayed labels as the others (a uniform draw would give it its share of the
        stream: 5 labels in 100 for a task labelled on 5% of rows)."""
        labelled = (self.y >= 0).T
        tasks = [t for t in range(labelled.shape[0]) if bool(labelled[t].any())]
        if len(tasks) < 2:
            return super().sample(k, gen)
        shares = np.diff(np.linspace(0, k, len(tasks) + 1).round().astype(int))
        idx = []
        for t, share in zip(tasks, shares.tolist()):
            rows = torch.nonzero(labelled[t]).flatten()
            pick = torch.randint(len(rows), (share,), generator=gen).to(rows.device)
            idx.append(rows[pick])
        idx = torch.cat(idx)
        return self.X.index_select(0, idx), self.y.index_select(0, idx)

    def add(self, X: torch.Tensor, y: torch.Tensor, gen: torch.Generator, labels=None) -> None:
        """Offer rows and their labels (every task's) to the memory; a row without any
        label has nothing to replay and is not kept. ``labels`` (``y`` on the host) is
        not needed here."""
        labelled = (y >= 0).any(1)
        if not bool(labelled.all()):
            keep = torch.nonzero(labelled).flatten()
            X, y = X[keep], y[keep]
        every_slot = torch.ones(len(self), dtype=torch.bool, device=self.y.device)
        self._reservoir(X, y, every_slot, self.capacity, gen, seen=int(self.seen[0]))
        self.seen = self.seen + len(y)

    def remap(self, positions) -> None:
        """Follow a grown label set: global class ``i`` becomes ``positions[i]``."""
        pos = torch.as_tensor(positions, dtype=torch.long).to(self.y.device)
        self.y = torch.where(self.y >= 0, pos[self.y.clamp_min(0)], MISSING)

    def drop_classes(self, classes) -> None:
        """Forget these global class indices: the labels holding one become missing (the
        row keeps teaching the other tasks), and rows left without a label go. The
        count of rows seen starts again at the rows kept, so the memory fills up."""
        cls = torch.as_tensor(classes, dtype=torch.long).to(self.y.device)
        y = torch.where(torch.isin(self.y, cls), MISSING, self.y)
        keep = (y >= 0).any(1)
        self.X, self.y = self.X[keep], y[keep]
        self.seen = torch.tensor([len(self)], dtype=torch.long)

    def clear(self) -> None:
        self.X, self.y = self.X[:0], self.y[:0]
        self.seen = torch.zeros(1, dtype=torch.long)

    def add_task(self) -> None:
        """A new task: every kept row lacks its label."""
        self.y = torch.cat([self.y, torch.full_like(self.y[:, :1], MISSING)], 1)


class TaskDriftMonitor:
    """A :class:`~skocl._drift.DriftMonitor` per task, each fed the errors of the rows
    that carry that task's label.

    Attributes
    ----------
    monitors : list of DriftMonitor
    """

    def __init__(self, detector, n_tasks: int) -> None:
        self.prototype = detector
        self.monitors = [DriftMonitor(_fresh(detector)) for _ in range(n_tasks)]

    @property
    def detector(self):
        """The detectors, one per task (None without detection)."""
        if self.prototype is None:
            return None
        return [m.detector for m in self.monitors]

    @property
    def drifts(self) -> list[list[int]]:
        """Per task, rows seen at each detection."""
        return [m.drifts for m in self.monitors]

    def observe(self, errors: list, seen: int, positions: list) -> list[int]:
        """Feed each task's errors (None: no row of the chunk has its label), of the
        rows at ``positions`` of the chunk; return the tasks whose monitor calls for a
        reaction."""
        return [
            t
            for t, (monitor, e, at) in enumerate(zip(self.monitors, errors, positions))
            if e is not None and len(e) and monitor.observe(e, seen, at)
        ]

    def snapshot(self) -> TaskDriftMonitor:
        """A copy that later observations leave alone (see DriftMonitor.snapshot)."""
        other = copy.copy(self)
        other.monitors = [monitor.snapshot() for monitor in self.monitors]
        return other

    def grow(self, growth) -> None:
        """Errors do not depend on the label set."""

    def add_task(self) -> None:
        self.monitors = [*self.monitors, DriftMonitor(_fresh(self.prototype))]

    def state_dict(self) -> dict:
        return {"tasks": [m.state_dict() for m in self.monitors]}

    def load_state_dict(self, state: dict) -> None:
        for monitor, part in zip(self.monitors, state["tasks"]):
            monitor.load_state_dict(part)


def _fresh(detector):
    if detector is None:
        return None
    return detector.clone() if hasattr(detector, "clone") else copy.deepcopy(detector)
