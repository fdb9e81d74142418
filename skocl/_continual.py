"""Continual-learning state that guards what was learned: the replay memory and the
anchor (the pretrained start of L2-SP, EWC and WiSE-FT).

Each is a small object that owns its state, saves and loads it, and follows the head's
growth; the update rule in ``_learner.OnlineLearner.update`` decides when each acts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

# Below this mean |z| a chunk's inputs count as drawn like the replay memory's.
SAME_INPUTS_Z = 2.0
# Rows compared by nearest neighbours in ReplayMemory._contradicted, and by how much more
# often a chunk's labels must differ from their nearest memory row's than memory rows'
# differ among themselves.
CHECK_ROWS = 512
CONTRADICT_MARGIN = 0.2
# Chunks of at most this many rows are offered to a full class-balanced memory a row at
# a time (ReplayMemory._replacing_rows): below it Python's loop is the cheaper.
SMALL_OFFER = 64


def replay_counts(sizes: list[int], held: int, share: float) -> list[int]:
    """Replayed rows per trunk mini-batch of ``sizes`` rows: as many as it has times
    ``share``, rounded up, at most the ``held`` rows of the memory."""
    return [min(held, math.ceil(n * share)) for n in sizes]


def logit_targets(Z, mask, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark experience replay's targets for ``width`` outputs from the logits ``Z`` the
    memory kept with replayed rows (NaN: none kept for that class): ``(targets,
    counts)``, the kept logits where they count and 0 elsewhere, and 1.0 where they
    count and 0.0 elsewhere. A row counts only where it has a kept logit for every
    class that can be predicted now (``mask``: 0 or -inf per class; None: all), on
    those classes. A row kept before a class became predictable says nothing of how it
    should score against that class, and pinning its old logits keeps its class's logit
    from rising to answer the new one (Split-Digits 0.953 with such rows, 0.959
    without, 10 seeds; DEFAULTS.md). ``counts`` is None where every one counts."""
    Z = _widened(Z, width)  # classes the head gained since: no logit kept
    if mask is None and not bool(torch.isnan(Z).any()):
        return Z, None  # every row counts whole (most often so): the logits as they are
    kept = Z == Z  # not NaN (kept logits are finite: a non-finite update is undone)
    if mask is None:  # every class: a row counts whole or not at all
        ok = kept.all(1)
        return torch.where(ok[:, None], Z, 0.0), ok.to(Z.dtype)[:, None].expand_as(Z)
    live = torch.isfinite(mask)[None, :]
    ok = kept & live & (kept | ~live).all(1, keepdim=True)
    return torch.where(ok, Z, 0.0), ok.to(Z.dtype)


def logit_gaps(z, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """The gaps between replayed rows' logits ``z`` and their ``targets`` (of
    :func:`logit_targets`), zero where none counts, and how many count."""
    T, counts = targets
    if counts is None:  # every one counts
        return z - T, T.new_tensor(float(T.numel()))
    return (z - T).mul_(counts), counts.sum()


def batch_targets(Z, mask, width: int, sizes: list[int], alpha: float) -> list:
    """:func:`logit_targets` of the kept logits ``Z`` of several mini-batches' replayed
    rows (``sizes`` of them per mini-batch, in order), worked out at once: per
    mini-batch ``(targets, counts, scale)``, classes by rows (the layout of the
    closed-form gradient's logits; ``counts`` None where all count), ``scale`` being
    ``alpha`` over how many count; None where none does."""
    T, counts = logit_targets(Z, mask, width)
    if counts is None:
        parts = (T,) if len(sizes) == 1 else T.split(sizes)
        return [(t.t(), None, alpha / t.numel()) if len(t) else None for t in parts]
    if len(sizes) == 1:
        per_batch = [counts.sum().item()]
    else:
        lengths = torch.tensor(sizes, device=counts.device)
        totals = torch.cat([counts.new_zeros(1), counts.sum(1).cumsum(0)])
        ends = lengths.cumsum(0)
        per_batch = (totals[ends] - totals[ends - lengths]).tolist()
    return [
        (t.t(), c.t(), alpha / k) if k else None
        for t, c, k in zip(T.split(sizes), counts.split(sizes), per_batch)
    ]


def head_replay(memory, y, w, gen):
    """The replayed rows that join the rows of the head's fine-tune (labels ``y``,
    weights ``w``, None: all weigh one): ``(Xm, y, w)``, ``min(len(memory), n)`` rows
    drawn from a :class:`ReplayMemory` (or a sparse one), then all the rows' labels and
    weights, the replayed rows together weighing as much as the others (None when all
    weigh one: unweighted rows and as many replayed, the most common case)."""
    n = len(y)
    Xm, ym = memory.sample(min(len(memory), n), gen)
    m = len(ym)
    if w is None and m == n:  # as many replayed rows: every row weighs one
        return Xm, torch.cat([y, ym]), None
    w = torch.ones(n, dtype=Xm.dtype, device=y.device) if w is None else w
    return Xm, torch.cat([y, ym]), torch.cat([w, w.new_full((m,), float(w.sum()) / m)])


class ReplayMemory:
    """A bounded memory of past rows, replayed alongside new data (rehearsal).

    ``strategy="reservoir"`` keeps a uniform sample of every row seen (Vitter's
    Algorithm R; Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual
    Learning"). ``strategy="class_balanced"`` gives each class seen an equal share of
    the capacity and keeps a uniform sample of that class's rows in it, so rare and old
    classes stay represented.

    Rows are kept as dense tensors on the model's device; labels as class indices. With
    dark experience replay (``logits`` given to :meth:`offer`), each row is kept with
    the network's logits for it at that time (``Z``, NaN for a class that could not be
    predicted then; None until a row is kept so).

    The replay rule: ``k = min(len(memory), n)`` rows drawn uniformly with replacement
    join each batch of ``n`` new rows. In a trunk mini-batch (:meth:`join_batch`) each
    replayed row weighs the mean weight of the batch's rows; in the head's fine-tune
    (:func:`head_replay`) the replayed rows together weigh as much as the chunk. After
    the update the chunk is offered to the memory (:meth:`offer`).
    """

    # Inner objects whose attributes a checkpoint keeps too (none here).
    parts: tuple = ()
    # The rows' kept logits; a class attribute too, for a memory pickled before them.
    Z: torch.Tensor | None = None
    _pending = False  # rows kept in this offer, their logits still to come
    # Whether all mini-batches' replayed rows can come from one draw (a subclass whose
    # draw depends on its size draws a mini-batch at a time).
    one_draw = True
    # What the rows that a call replaced in place held, for a failed call to put back
    # (:meth:`record`); None when no call records.
    _journal: list | None = None

    def __init__(self, capacity: int, strategy: str, n_features: int, dtype, device) -> None:
        self.capacity, self.strategy = capacity, strategy
        self.X = torch.empty((0, n_features), dtype=dtype, device=device)
        self.y = torch.empty((0,), dtype=torch.long, device=device)
        self.seen = torch.zeros(0, dtype=torch.long)  # rows seen per class index
        self.Z = None
        self._labels = None  # (y, its positions sorted, rows per class): _label_index

    def __len__(self) -> int:
        return self.y.shape[0]

    # ------------------------------------------------------------- in-place writes
    # A row kept in place of another is written in place: a copy of the whole memory at
    # every call (to leave the tensors a failed call puts back untouched) cost 6 % of a
    # 32-row call at 2,000 rows of 200 features, more the wider the rows. Rows only ever
    # change this way; the memory grows and shrinks by new tensors, which a failed call
    # puts back by reference.
    def record(self) -> int:
        """Keep, from now on, what in-place writes replace (a call starts: the
        :class:`~skocl._learner_checkpoint.Checkpoint`'s); returns the mark that
        :meth:`undo` and :meth:`stop` take (0 unless a call is already recording)."""
        if self._journal is None:
            self._journal = []
        return len(self._journal)

    def undo(self, mark: int) -> None:
        """Put back, newest first, what the in-place writes since ``mark`` replaced."""
        journal = self._journal or []
        while len(journal) > mark:
            tensor, at, old = journal.pop()
            tensor.index_copy_(0, at, old)

    def stop(self, mark: int) -> None:
        """The call that :meth:`record` returned ``mark`` to ended: the outermost one
        stops the recording."""
        if mark == 0:
            self._journal = None

    def _put(self, name: str, at: torch.Tensor, rows: torch.Tensor) -> None:
        """Rows ``at`` (distinct positions) of the tensor ``name`` (``"X"`` or ``"Z"``)
        set to ``rows``, in place; what they held recorded first (:meth:`record`)."""
        tensor = getattr(self, name)
        if self._journal is not None:
            self._journal.append((tensor, at, tensor.index_select(0, at)))
        tensor.index_copy_(0, at, rows)

    def sample(self, k: int, gen: torch.Generator, targets: bool = False) -> tuple:
        """``k`` rows drawn uniformly with replacement: ``(X, y)``, and their kept
        logits ``Z`` too with ``targets``."""
        idx = torch.randint(len(self), (k,), generator=gen).to(self.y.device)
        out = (self.X.index_select(0, idx), self.y.index_select(0, idx))
        return (*out, self.Z.index_select(0, idx)) if targets else out

    def replays(
        self, sizes: list[int], gen: torch.Generator, share: float = 1.0, targets: bool = False
    ) -> list:
        """The replayed rows ``(X, y)`` (``(X, y, Z)`` with ``targets``: their kept logits
        too) that join trunk mini-batches of ``sizes`` rows, drawn now: for each,
        as many as it has times ``share`` (rounded up; at most the memory's size). One
        uniform draw and one gather serve all (the same rows as a draw per mini-batch,
        for less work)."""
        counts = replay_counts(sizes, len(self), share)
        if not self.one_draw:
            return [self.sample(c, gen) for c in counts]
        drawn = self.sample(sum(counts), gen, targets)
        if len(counts) == 1:
            return [drawn]
        out, start = [], 0
        for c in counts:
            out.append(tuple(t[start : start + c] for t in drawn))
            start += c
        return out

    def join_batch(self, X, y, w, replayed):
        """A trunk mini-batch ``(X, y, w)`` joined by its ``replayed`` rows (one of
        :meth:`replays`), each weighing the batch's mean weight (``w`` None: all weigh
        one)."""
        Xm, ym = replayed
        if w is not None:
            w = torch.cat([w, w.new_full((len(ym),), float(w.mean()))])
        return torch.cat([X, Xm]), torch.cat([y, ym]), w

    def offer(self, rows, batch_size: int, gen: torch.Generator, logits=None) -> None:
        """Offer every row of ``rows`` (a :class:`~skocl._rows.Rows`) to the memory,
        :meth:`~skocl._rows.Rows.slices` at a time. ``logits`` gives the logits kept
        with the rows kept (:attr:`Z`): the rows' own (a tensor), or a function of rows
        with a ``width`` (their number of logits), called once on the rows kept, at the
        end; None keeps none."""
        start = 0
        for X in rows.slices(batch_size):
            end = start + len(X)
            labels = None if rows.labels is None else rows.labels[start:end]
            if logits is None:
                self.add(X, rows.y[start:end], gen, labels)
            else:
                part = logits[start:end] if isinstance(logits, torch.Tensor) else logits
                self.add(X, rows.y[start:end], gen, labels, part)
            start = end
        if self._pending:  # rows kept: their logits, in one pass
            self._pending = False
            kept = torch.nonzero(torch.isposinf(self.Z[:, 0])).flatten()
            self._put("Z", kept, logits(self.X.index_select(0, kept)))

    def _kept_logits(self, X: torch.Tensor, logits, idx) -> torch.Tensor | None:
        """What :attr:`Z` holds for rows ``X`` about to be kept (rows ``idx`` of an
        :meth:`add`'s): their logits (``logits`` a tensor), +inf until :meth:`offer`
        puts them there (a function), or NaN (None; None while the memory keeps
        none); :attr:`Z` widened to the classes they cover."""
        if logits is None:
            Z = self.Z
            return None if Z is None else Z.new_full((len(X), Z.shape[1]), math.nan)
        given = isinstance(logits, torch.Tensor)
        width = logits.shape[1] if given else logits.width
        if self.Z is None:
            self.Z = X.new_full((len(self), width), math.nan)
        elif width > self.Z.shape[1]:
            self.Z = _widened(self.Z, width)
        if given:
            rows = logits.index_select(0, idx) if isinstance(idx, torch.Tensor) else logits[idx]
            return _widened(rows, self.Z.shape[1])
        self._pending = True
        return self.Z.new_full((len(X), self.Z.shape[1]), math.inf)

    def add(self, X: torch.Tensor, y: torch.Tensor, gen: torch.Generator, labels=None,
            logits=None) -> None:  # fmt: skip
        """Offer the rows of a chunk to the memory (``labels``: ``y`` on the host, when
        the caller has them; ``logits``: as in :meth:`offer`)."""
        labels = y.cpu().numpy() if labels is None else labels
        counts = np.bincount(labels, minlength=len(self.seen))
        if len(counts) > len(self.seen):  # a class index past those seen
            self.seen = torch.cat(
                [self.seen, torch.zeros(len(counts) - len(self.seen), dtype=torch.long)]
            )
        if self.strategy == "reservoir":
            every_slot = torch.ones(len(self), dtype=torch.bool, device=self.y.device)
            self._reservoir(X, y, every_slot, self.capacity, gen, logits=logits)
            self.seen = self.seen + torch.from_numpy(counts)
            return
        active = np.count_nonzero(self.seen.numpy() + counts)  # classes with a row
        quota = max(self.capacity // max(active, 1), 1)
        held = self._shrink_to(quota, gen)
        self._balanced(X, y, labels, counts, held, quota, gen, logits)
        self.seen = self.seen + torch.from_numpy(counts)

    def _balanced(self, X, y, labels, counts, held, quota, gen, logits=None) -> None:
        """Algorithm R per class (capacity ``quota`` each) over a chunk, class by class
        in label order, as :meth:`_reservoir` on each class's rows would do it (the same
        rows kept, the same random numbers drawn), in a few operations for all classes.
        ``labels``: ``y`` on the host, ``counts``: the chunk's rows per class, ``held``:
        the memory's."""
        last = None
        if len(labels) <= SMALL_OFFER:
            last = self._replacing_rows(labels, held, quota, gen)
        if last is None:
            last = self._appended_then_replacing(X, y, labels, counts, held, quota, gen, logits)
        if not last:
            return
        target = _index(self._label_index()[0][list(last)], self.y.device)
        source = _index(list(last.values()), y.device)
        # The labels stay as they are: each row takes the slot of a row of its class.
        kept = X.index_select(0, source)
        Z = self._kept_logits(kept, logits, source)
        self._put("X", target, kept)
        if Z is not None:
            self._put("Z", target, Z)

    def _appended_then_replacing(self, X, y, labels, counts, held, quota, gen, logits):
        """:meth:`_balanced`'s arrays: rows appended while there is room (done here),
        then which rows take a slot, as ``{slot: row}`` (a slot by its place among the
        memory's rows sorted by label, a row by its place in the chunk)."""
        seen = self.seen.numpy()
        free = np.zeros(len(counts), dtype=np.int64)
        room = self.capacity - len(self)
        appending = room > 0  # a full memory (most calls) appends nothing
        if appending:
            for c in np.flatnonzero(counts):  # rows appended while there is room
                free[c] = max(min(quota - held[c], room, counts[c]), 0)
                room -= free[c]
        # The chunk's rows grouped by class (label order), each class in chunk order:
        # row p of the grouping is its class's rank[p]-th row.
        # (Small labels as int16: numpy's stable sort is a radix sort for them, 25 against
        # 86 us for 10,000 rows; the same order.)
        small = len(counts) < 1 << 15
        order = np.argsort(labels.astype(np.int16) if small else labels, kind="stable")
        cls = labels[order]
        rank = np.arange(len(cls)) - (np.cumsum(counts) - counts)[cls]
        slots = held + free
        appended = rank < free[cls] if appending else None
        drawn = slots[cls] > 0
        if appended is not None and appended.any():
            drawn &= ~appended
            rows = _index(order[appended], y.device)
            kept = X.index_select(0, rows)
            Z = self._kept_logits(kept, logits, rows)
            self.X = torch.cat([self.X, kept])
            self.y = torch.cat([self.y, y.index_select(0, rows)])
            if Z is not None:
                self.Z = torch.cat([self.Z, Z])
        if not drawn.any():
            return {}
        # Row t (1-based count of its class) replaces slot j ~ U{0..t-1} when j < slots.
        t = (seen[cls] + rank + 1)[drawn].astype(np.float64)
        r = torch.rand(len(t), generator=gen, dtype=torch.float64).numpy()
        j = (r * t).astype(np.int64)
        keep = j < slots[cls][drawn]
        if not keep.any():
            return {}
        pos = np.flatnonzero(drawn)[keep]
        # Class c's slots are its positions in the memory, in order: entries start[c]
        # to start[c] + slots[c] of the memory's positions sorted by label.
        start = np.cumsum(slots) - slots
        flat = start[cls[pos]] + j[keep]
        # When two rows pick one slot, the later one wins, as in the sequential algorithm.
        return dict(zip(flat.tolist(), order[pos].tolist()))

    def _replacing_rows(self, labels: np.ndarray, held: np.ndarray, quota: int, gen):
        """:meth:`_appended_then_replacing` when no row is appended (the memory is full,
        or each of the chunk's classes holds its quota), a row at a time: on a chunk of
        at most ``SMALL_OFFER`` rows Python's loops cost less than the arrays'
        operations (the same random numbers, the same rows, in the same order). None,
        having done nothing, when a row is to be appended."""
        lab, seen, slots = labels.tolist(), self.seen.tolist(), held.tolist()
        if len(self) < self.capacity and any(slots[c] < quota for c in set(lab)):
            return None
        start = list(itertools.accumulate(slots, initial=0))
        rank = [0] * len(slots)
        drawn = []  # (count of its class, class, row), the rows grouped by class
        for p in sorted(range(len(lab)), key=lab.__getitem__):
            c = lab[p]
            rank[c] += 1
            if slots[c] > 0:
                drawn.append((seen[c] + rank[c], c, p))
        if not drawn:
            return {}
        last = {}
        draws = torch.rand(len(drawn), generator=gen, dtype=torch.float64).tolist()
        for u, (t, c, p) in zip(draws, drawn):
            j = int(u * t)
            if j < slots[c]:
                last[start[c] + j] = p
        return last

    def _label_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The memory's positions sorted by label (a stable sort) and its rows per
        class, on the host, kept while the labels are the same tensor (they never change
        in place)."""
        cached = getattr(self, "_labels", None)  # None too in a memory pickled before it
        if cached is None or cached[0] is not self.y or type(cached[1]) is not np.ndarray:
            order = torch.sort(self.y, stable=True).indices.cpu().numpy()
            cached = self._labels = (self.y, order, torch.bincount(self.y).cpu().numpy())
        return cached[1:]

    def _reservoir(self, X, y, slots_mask, quota, gen, seen=None, logits=None) -> None:
        """Algorithm R over the memory slots selected by ``slots_mask`` (capacity
        ``quota``), for ``seen`` rows seen before (all rows when None)."""
        seen = int(self.seen.sum()) if seen is None else seen
        slots = torch.nonzero(slots_mask).flatten()
        free = min(quota - len(slots), self.capacity - len(self), len(y))
        if free > 0:
            Z = self._kept_logits(X[:free], logits, slice(0, free))
            self.X = torch.cat([self.X, X[:free]])
            self.y = torch.cat([self.y, y[:free]])
            if Z is not None:
                self.Z = torch.cat([self.Z, Z])
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
        # The labels out of place: they change only so, and _label_index keeps their
        # order while they are the same tensor.
        Z = self._kept_logits(X[source], logits, source)
        self._put("X", target, X[source])
        self.y = self.y.index_put((target,), y[source])
        if Z is not None:
            self._put("Z", target, Z)

    def _shrink_to(self, quota: int, gen: torch.Generator) -> np.ndarray:
        """Drop rows of classes over ``quota``; a random subset of a uniform sample is
        still a uniform sample. Returns the rows then held per class."""
        held = self._label_index()[1]
        counts = np.zeros(len(self.seen), dtype=np.int64)
        counts[: len(held)] = held
        over = np.flatnonzero(counts > quota).tolist()
        if not over:
            return counts
        keep = torch.ones(len(self), dtype=torch.bool, device=self.y.device)
        for c in over:
            idx = torch.nonzero(self.y == c).flatten()
            keep[idx[torch.randperm(len(idx), generator=gen)[quota:]]] = False
        self._keep(keep)
        return np.minimum(counts, quota)

    def _keep(self, keep: torch.Tensor) -> None:
        """Keep the rows where ``keep`` (a mask) holds, their kept logits too."""
        self.X, self.y = self.X[keep], self.y[keep]
        if self.Z is not None:
            self.Z = self.Z[keep]

    def remap(self, positions, width: int | None = None) -> None:
        """Follow a grown label set: class ``i`` becomes ``positions[i]`` (the kept
        logits' columns too, ``width`` of them: NaN for the new classes)."""
        pos = torch.as_tensor(positions, dtype=torch.long)
        self.y = pos.to(self.y.device)[self.y]
        if self.Z is not None:
            if width is None:
                width = int(pos.max()) + 1 if len(pos) else 0
            Z = self.Z.new_full((len(self.Z), width), math.nan)
            old = pos[: self.Z.shape[1]].to(Z.device)
            Z[:, old] = self.Z[:, : len(old)]
            self.Z = Z
        seen = torch.zeros(int(pos.max()) + 1 if len(pos) else 0, dtype=torch.long)
        seen[pos[: len(self.seen)]] = self.seen[: len(pos)]
        self.seen = seen

    def grow(self, growth) -> None:
        """Follow the head's growth to a larger label set."""
        if growth.task is None:
            self.remap(growth.label_map, growth.n_classes)
        else:
            self.remap(growth.label_map)

    def forget_contradicted(self, X, y_idx) -> bool:
        """After a drift, drop the rows that the new data contradicts.

        A drift in the error can be a new concept (the same inputs now carry other
        labels: old rows must go) or new inputs (new classes, a new domain: old rows
        stay valid and keep guarding against forgetting). When the chunk's inputs ``X``
        (host array or CSR matrix) look like the memory's (mean |z| of the per-feature
        mean difference below ``SAME_INPUTS_Z``), or its labels contradict the memory's
        at the same inputs (:meth:`_contradicted`: the means can move with the concept),
        the rows of the chunk's classes are dropped; otherwise they are kept. Returns
        whether they were dropped (the concept changed).
        """
        Xc = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        Xm = self.X.double()  # its moments are computed where it lives
        m_mean, m_var = (v.cpu().numpy() for v in (Xm.mean(0), Xm.var(0, correction=0)))
        var = Xc.var(axis=0) / len(Xc) + m_var / len(Xm)
        diff = np.abs(Xc.mean(axis=0) - m_mean)
        z = np.divide(diff, np.sqrt(var), out=np.zeros_like(diff), where=var > 0)
        z[(var == 0) & (diff > 0)] = np.inf
        if np.mean(np.minimum(z, 1e6)) < SAME_INPUTS_Z or self._contradicted(Xc, y_idx):
            self.drop_classes(np.unique(y_idx))
            return True
        return False

    @torch.no_grad()
    def _contradicted(self, Xc: np.ndarray, y_idx: np.ndarray) -> bool:
        """Whether the chunk's labels contradict the memory's at the same inputs: most
        of the chunk's rows (at most ``CHECK_ROWS``) lie as close to a memory row as
        memory rows lie to each other (the median distance to the nearest other one, at
        least a twentieth of the typical distance between them),
        and those rows' labels differ from their nearest memory row's more often than
        memory rows' differ from their nearest neighbour's, by ``CONTRADICT_MARGIN``.
        Inputs whose distribution moved with the concept (a generator that balances
        its classes) fail the test of the means but pass this one."""
        Xm, ym = self.X, self.y
        step = max(len(Xc) // CHECK_ROWS, 1)
        C = torch.as_tensor(Xc[::step][:CHECK_ROWS], dtype=Xm.dtype, device=Xm.device)
        yc = torch.as_tensor(y_idx[::step][:CHECK_ROWS], device=ym.device)
        own = torch.arange(0, len(Xm), max(len(Xm) // CHECK_ROWS, 1), device=ym.device)
        D = torch.cdist(Xm.index_select(0, own), Xm)
        D[torch.arange(len(own), device=D.device), own] = torch.inf  # not itself
        spacing, nearest = D.min(1)
        # At least a twentieth of the typical distance between memory rows: rows that
        # repeat (categorical inputs) would set no scale, and a chunk's copy of them
        # differs by what an online scaler moved since they were kept.
        typical = D[torch.isfinite(D)].median()
        radius = torch.maximum(spacing.median(), typical / 20)
        d, j = torch.cdist(C, Xm).min(1)
        close, close_m = d <= radius, spacing <= radius
        if float(close.float().mean()) < 0.5 or not bool(close_m.any()):
            return False
        differ = float((yc[close] != ym[j[close]]).float().mean())
        base = float((ym[own][close_m] != ym[nearest[close_m]]).float().mean())
        return differ > base + CONTRADICT_MARGIN

    def drop_classes(self, classes) -> None:
        """Forget the rows of these class indices (their counts start again)."""
        cls = torch.as_tensor(classes, dtype=torch.long)
        keep = ~torch.isin(self.y, cls.to(self.y.device))
        self._keep(keep)
        self.seen[cls[cls < len(self.seen)]] = 0

    def clear(self) -> None:
        self.X, self.y = self.X[:0], self.y[:0]
        self.Z = None if self.Z is None else self.Z[:0]
        self.seen.zero_()

    def state_dict(self) -> dict:
        state = {"X": self.X.cpu(), "y": self.y.cpu(), "seen": self.seen.clone()}
        if self.Z is not None:
            state["Z"] = self.Z.cpu()
        return state

    def load_state_dict(self, state: dict) -> None:
        device = self.X.device
        self.X, self.y = state["X"].to(device, self.X.dtype), state["y"].to(device)
        self.seen = state["seen"].clone()
        Z = state.get("Z")  # None in a file saved before logits were kept
        self.Z = None if Z is None else Z.to(device, self.X.dtype)


@dataclass
class Anchor:
    r"""The pretrained start: the weights :math:`\theta^*` of the trunk and
    :math:`\phi^*` of the head, and (for EWC) the trunk's Fisher information :math:`F`.

    L2-SP and EWC pull the trunk toward :math:`\theta^*`: the penalty
    :math:`\frac{\lambda}{2}\sum_i F_i(\theta_i - \theta^*_i)^2` adds
    :math:`\lambda F \odot (\theta - \theta^*)` to the trunk's gradient. ``F = 1`` is
    L2-SP (Li et al. 2018, "Explicit Inductive Bias for Transfer Learning with
    Convolutional Networks"); ``F`` the diagonal empirical Fisher information is EWC
    (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks").
    WiSE-FT fusion interpolates from :math:`(\theta^*, \phi^*)`.
    """

    trunk: list[torch.Tensor]
    head: list[torch.Tensor]
    fisher: list[torch.Tensor] | None = None

    def add_head(self, params) -> None:
        """A new task's head: its start is its initial weights."""
        self.head = [*self.head, *(p.detach().clone() for p in params)]

    @classmethod
    def capture(cls, trunk_params, head_params, fisher=None) -> Anchor:
        return cls(
            [p.detach().clone() for p in trunk_params],
            [p.detach().clone() for p in head_params],
            fisher,
        )

    def penalty(self, regularization: str | None, strength: float):
        """``penalty(params, grads)`` for the trunk's steps, or None when there is none."""
        if regularization is None or not strength:
            return None
        fisher = self.fisher if regularization == "ewc" else None

        def add_pull(params, grads):
            weights = fisher if fisher is not None else [None] * len(params)
            return [
                _pulled(p, g, w, f, strength)
                for p, g, w, f in zip(params, grads, self.trunk, weights)
            ]

        return add_pull

    def grow(self, growth) -> None:
        """Known classes keep their pretrained head rows; new classes, which have none,
        start from their initial rows."""
        start = dict(zip(map(id, growth.old_head_params), self.head))
        idx = torch.as_tensor(growth.positions, device=growth.device)
        for old, new in growth.pairs:
            rows = new.detach().clone()
            rows[idx] = start.pop(id(old))
            start[id(new)] = rows
        self.head = [start[id(p)] for p in growth.new_head_params]

    def state_dict(self) -> dict:
        return {
            "trunk": [w.cpu() for w in self.trunk],
            "head": [w.cpu() for w in self.head],
            "fisher": self.fisher and [f.cpu() for f in self.fisher],
        }

    @classmethod
    def from_state_dict(cls, state: dict, device) -> Anchor:
        fisher = state["fisher"]
        return cls(
            [w.to(device) for w in state["trunk"]],
            [w.to(device) for w in state["head"]],
            None if fisher is None else [f.to(device) for f in fisher],
        )


def _pulled(p, g, w, f, strength):
    """The gradient ``g`` of ``p`` plus the pull ``strength * f * (p - w)`` toward the
    anchor ``w`` (``f`` None: 1). A row-sparse gradient (a sparse first layer's) gets
    the pull on its rows only, and stays row-sparse: rows of words a batch lacks are
    neither pulled nor moved, as lazy Adam leaves them (a dense pull would have Adam
    move every row of the layer by about the learning rate at every step)."""
    if not g.is_sparse:
        if f is None:
            return g + strength * (p.detach() - w)
        return g + strength * f * (p.detach() - w)
    g = g.coalesce()
    rows = g.indices()[0]
    diff = p.detach()[rows] - w[rows]
    if f is not None:
        diff = f[rows] * diff
    values = g.values() + strength * diff
    # The indices are those of a coalesced gradient: valid, so torch need not check them.
    return torch.sparse_coo_tensor(
        g.indices(), values, g.shape, is_coalesced=True, check_invariants=False
    )


def empirical_fisher(
    trunk: nn.Module,
    head: nn.Module,
    params: list[nn.Parameter],
    X: torch.Tensor,
    y: torch.Tensor,
    tasks=None,
) -> list[torch.Tensor]:
    """Diagonal empirical Fisher of the trunk: the mean over rows of the squared
    per-row gradient of the log-likelihood (with ``tasks``, of the sum of the tasks'
    log-likelihoods), normalised to mean 1 so that the EWC strength is on the same
    scale as L2-SP's."""
    fisher = [torch.zeros_like(p) for p in params]
    was_training = trunk.training
    trunk.eval()
    head.eval()
    for i in range(len(y)):
        x = X[i : i + 1] if torch.is_tensor(X) else X.take(torch.tensor([i]))
        z = head(trunk(x))
        loss = F.cross_entropy(z, y[i : i + 1]) if tasks is None else tasks.loss(z, y[i : i + 1])
        for f, g in zip(fisher, torch.autograd.grad(loss, params, materialize_grads=True)):
            f += g.detach() ** 2
    trunk.train(was_training)
    total = sum(f.sum() for f in fisher)
    count = sum(f.numel() for f in fisher)
    scale = count / total if total > 0 else 1.0
    return [f * scale for f in fisher]


def _widened(Z: torch.Tensor, width: int) -> torch.Tensor:
    """Kept logits ``Z`` with NaN columns up to ``width`` classes."""
    if Z.shape[1] >= width:
        return Z
    return torch.cat([Z, Z.new_full((len(Z), width - Z.shape[1]), math.nan)], 1)


def _index(a: np.ndarray, device) -> torch.Tensor:
    """Host positions as an index tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)
