"""The torch side of OnlineFineTuneClassifier: one object owns the network, its
optimizers, the random stream and the continual components, and holds the online rule
in :meth:`OnlineLearner.update`."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning

from ._continual import Anchor, ReplayMemory, empirical_fisher, head_replay
from ._drift import DriftMonitor, watched
from ._fresh_head import FreshHead
from ._fusion import NoFusion, make_fusion
from ._head_rates import HeadRates
from ._modules import (
    Growth,
    grow_linear,
    has_stochastic_layers,
    is_mode_free,
    make_optimizer,
    output_layer,
    sparse_layers,
)
from ._random import Rng
from ._rows import FORWARD_ROWS, Rows, to_tensor
from ._settings import Pretraining, Settings
from ._sparse import csr_rows
from ._sparse_replay import SparseReplayMemory
from ._steps import (
    Transaction,
    argmax_rows,
    features,
    fine_tune_head,
    fine_tune_heads,
    forward,
    head_features,
    predict_rows,
    snapshot,
    to_cpu,
    train_epoch,
    trunk_forward,
)
from ._tasks import TaskDriftMonitor, TaskHeads, TaskReplayMemory, Tasks, label_map

# Rows used to estimate EWC's Fisher information.
FISHER_ROWS = 256
# Rows of a chunk the head's fine-tune learns from, at most (a uniform sample of a larger
# chunk; as many replayed rows join them): HEAD_ROWS_PER_CLASS per class the head
# predicts, at least HEAD_ROWS_MIN and at most HEAD_ROWS (head_budget()). Chosen by
# benchmarks/bench_head_budget.py (issue 10, benchmarks/DEFAULTS.md, "after ea6c803";
# six streams of 10,000-row chunks of 2 to 10 classes, 10 seeds): a stream lost
# accuracy below about 200 rows a class (10 classes: 0.610 at 2,048 rows, 0.603 at
# 1,024), little above it. The rule read 0.7394 prequential accuracy against 0.7400 at
# 2,048 rows whatever the classes, for about 5 % less time a 4-class call (target
# 2a). Chunks of at most 1,024 rows (every other benchmark's) are learned whole.
HEAD_ROWS = 2048
HEAD_ROWS_MIN = 1024
HEAD_ROWS_PER_CLASS = 256
# Most replay-memory rows the head's closed-form candidate starts from (a uniform
# sample of a larger memory).
MEMORY_HEAD_ROWS = 4096


def head_budget(n_classes: int) -> int:
    """The most rows of a chunk the head's fine-tune learns from, for a head of
    ``n_classes`` outputs."""
    return min(max(HEAD_ROWS_PER_CLASS * n_classes, HEAD_ROWS_MIN), HEAD_ROWS)


def _rates_apply(rates, s: Settings) -> bool:
    """Whether the head's candidates (:class:`HeadRates` ``rates``, None of several
    tasks) apply under settings ``s``: several entries in ``head_rates``, and a head
    fine-tune that moves the head."""
    return rates is not None and len(rates.spec) >= 2 and bool(s.head_steps and s.head_lr > 0)


def _new_classes(labels: np.ndarray, held: np.ndarray, s: Settings) -> bool:
    """Whether a chunk's ``labels`` hold a class that no earlier chunk showed (``held``:
    the replay memory's rows seen per class, counted only with a memory: without one,
    False). A drift that brings new classes is a class-incremental step, where a head
    fine-tuned on the chunk leans to the new classes and the closed-form one, whose
    classes weigh equally, does not (DEFAULTS.md, "New classes too": Split-Digits
    0.937 to 0.964)."""
    if not s.memory_size:
        return False
    shown = np.unique(labels)
    return bool((shown >= len(held)).any() or (held[shown[shown < len(held)]] == 0).any())


class OnlineLearner:
    """The network (a trunk and a head), their optimizers, a private random stream and
    the continual components: the replay ``memory``, the ``anchor`` (the pretrained
    start), the ``fusion`` that picks the served weights, and the ``drift`` monitor.

    Parameters
    ----------
    module, trunk, head : torch.nn.Module
        The whole network and its two parts, on ``device`` in ``dtype``.
    n_features : int
        Width of the input.
    dtype : torch.dtype
    device : torch.device
    seed : int
        Seed of the private random stream.
    detector : object or None
        A fresh drift detector.
    user_module : bool
        Whether the network is the user's (then, without ``fit``, its weights are the
        pretrained start).
    n_classes : int, default=0
        Outputs of the head. The classes that training has shown are tracked
        (``seen_classes``): a class of a fixed label set that no row has shown yet takes
        no part in the loss (see :meth:`update`).
    sparse : bool, default=False
        Whether the network reads sparse rows (:class:`~skocl.sparse.SparseRows`):
        then the replay memory keeps rows in CSR form and a wide sparse first layer is
        updated, checkpointed and rolled back only at the rows an update touches.

    A ``head`` that is a :class:`~skocl._tasks.TaskHeads` makes the learner learn
    several tasks (``tasks``, their layout; None for one task): labels are then
    ``(n, n_tasks)`` global indices with ``-1`` for a missing label, the loss is the sum
    of the tasks' losses, each head is fine-tuned on the rows labelled for its task, the
    replay memory keeps every task's label of a row and drift is watched per task.
    """

    def __init__(self, module, trunk, head, *, n_features, dtype, device, seed, detector,
                 user_module, n_classes=0, sparse=False) -> None:  # fmt: skip
        self.module, self.trunk, self.head = module.eval(), trunk, head
        self.trunk_params = [p for p in trunk.parameters() if p.requires_grad]
        self.head_params = [p for p in head.parameters() if p.requires_grad]
        self.dtype, self.device = dtype, device
        self.gpu = None if device.type == "cpu" else device
        self.rng = Rng(seed)
        self.stochastic = has_stochastic_layers(module)
        # Modes switched around the steps only where a layer depends on them (growth
        # keeps the layers' types).
        self.mode_free = is_mode_free(module)
        self.user_module = user_module
        # A user's (pretrained) head has learned every class it has; a fresh one none.
        self.seen_classes = np.full(n_classes, user_module, dtype=bool)
        self.tasks = Tasks(head.sizes) if isinstance(head, TaskHeads) else None
        self._update_mask()
        self.trunk_optimizer = self.head_optimizer = None
        self.sparse = sparse
        self.sparse_layers = sparse_layers(trunk)
        if self.tasks is None:
            memory = SparseReplayMemory if sparse else ReplayMemory
            self.memory = memory(0, "class_balanced", n_features, dtype, device)
            self.drift = DriftMonitor(detector)
        else:
            k = len(self.tasks)
            if sparse:
                select = TaskReplayMemory(0, "", 1, torch.long, torch.device("cpu"), k)
                self.memory = SparseReplayMemory(
                    0, "reservoir", n_features, dtype, device, select=select
                )
            else:
                self.memory = TaskReplayMemory(0, "", n_features, dtype, device, k)
            self.drift = TaskDriftMonitor(detector, k)
        # Of one task, the head is fine-tuned at several rates (HeadRates).
        self.rates = HeadRates() if self.tasks is None else None
        # Of one task, a drift starts a fresh head beside the head (FreshHead).
        self.fresh = FreshHead() if self.tasks is None else None
        self.anchor: Anchor | None = None
        self.fusion = NoFusion()
        self.settings: Settings | None = None

    # ------------------------------------------------------------------ the rule
    def update(
        self, rows: Rows, *, seen: int, watch: bool = True, saved: dict | None = None
    ) -> tuple[float, int]:
        """The online step of ``partial_fit`` on ``rows``, in order:

        1. predict the chunk before learning it: each of the head's rates
           (:class:`HeadRates`, of a trained head) is scored on it, and (``watch``) the
           errors feed the drift monitor; on a drift it reacts to, drop the replay rows
           the chunk contradicts (then start a :class:`FreshHead`, which replaces the
           head once it leads) and restart the fusion;
        2. in a transaction (undone if a weight ends up non-finite): trunk epochs, then
           the head's fine-tune on the trunk's frozen features (at each of the head's
           rates, the best one served), replayed rows joining both; classes of a fixed
           label set that no row has shown yet (this chunk included) take no part in
           the loss, so their head rows wait untrained as a grown label set's new rows
           do, instead of learning "never this class";
        3. offer the chunk to the replay memory;
        4. capture the anchor, at the first update without a pretrained start;
        5. fuse: set the served weights.

        ``seen`` is the number of rows learned before; ``saved`` (a :class:`Checkpoint`'s)
        holds copies of the weights as they are now, which the transaction reuses.
        Returns the mean loss of the trunk steps and the number of skipped steps.
        """
        s = self.settings
        self._check_anchor(s)
        watch = watch and self.drift.detector is not None
        rates = self._several_rates(s)
        fresh = self.fresh is not None and self.fresh.allowed(self, s, watch)
        # The trunk's forward for features, built once for the whole update (its
        # weights are views, so they follow the trunk's steps).
        forward = trunk_forward(self.trunk)
        if watch or rates:
            if self._look(rows, s, seen, watch, rates, fresh, forward):
                saved = None  # the head changed since the checkpoint's copies
        self.see(rows.labels)
        self._set_rates(s)
        if self.anchor is None and self.user_module:
            self.capture_anchor(rows)  # a user's module is the pretrained start
        memory = self.memory if s.memory_size else None
        txn = Transaction(
            self.params,
            [self.trunk_optimizer, self.head_optimizer],
            None if saved else self.at_stake(rows.X),
            saved,
        )
        with self.rng.scope(self.device, self.stochastic) as gen:
            loss, skipped, undone, feats = self._trunk_then_head(
                rows, s, memory, gen, txn, rates, forward
            )
            if memory is not None and not undone:  # rows that broke the update stay out
                logits = self._kept_logits(s, forward, feats)
                memory.offer(rows, s.batch(len(rows)), gen, logits)
        if self.anchor is None:
            self.capture_anchor(rows)  # from scratch: the first update is the start
        self.fusion.after_update(self.trunk, self.head, self.params, self.anchor)
        return loss, skipped

    def _kept_logits(self, s: Settings, forward, feats=None):
        """What the replay memory keeps with a row it keeps, for dark experience replay
        (``logit_replay``): the logits of the network as it is after the update,
        through the head the trunk learns through (a copy of the head rather than the
        closed-form candidate, whose logits are of another scale:
        :meth:`HeadRates.train_through`), NaN for the classes that cannot be predicted
        yet. Those of the chunk's rows when ``feats`` holds their features (the head's
        fine-tune computed them: one product), else a function of rows. None without
        it: then, with several tasks, or a sparse memory."""
        if not s.logit_replay or self.tasks is not None or type(self.memory) is not ReplayMemory:
            return None
        head, rates, mask = self.head, self.rates, self.mask
        if rates is not None and rates.weight is not None and rates.current == len(rates.rates):
            best = int(np.argmin(rates.errors[: len(rates.rates)]))
            weight, bias = rates.weight[best], rates.bias[best]
        elif type(head) is torch.nn.Linear:
            weight, bias = head.weight, head.bias
        else:
            weight = None

        def logits(X, feats=None):
            with torch.no_grad():
                feats = forward(X) if feats is None else feats
                z = head(feats) if weight is None else torch.addmm(bias, feats, weight.t())
                return z if mask is None else z.masked_fill(torch.isinf(mask), math.nan)

        if feats is not None:
            return logits(None, feats)
        logits.width = len(self.seen_classes)
        return logits

    def _several_rates(self, s: Settings) -> bool:
        """Whether this update fine-tunes the head at several rates (:class:`HeadRates`)."""
        rates = self.rates
        if not _rates_apply(rates, s):
            return False
        if rates.weight is None and not rates.off:
            with self.rng.generator() as gen:
                rates.start(
                    self.head, s.optimizer, self.anchor is not None or self.user_module,
                    self._memory_features(gen) if rates.wants_lda else None,
                )  # fmt: skip
        return not rates.off

    def _start_rates_at_change(self, s: Settings) -> None:
        """At a concept change, or a drift that brings new classes, the candidates of a
        head that keeps ``head_lr`` alone (from scratch, or after a ``fit`` that stopped
        at ``max_iter``) start (:meth:`HeadRates.start_at_change`) from the replay
        memory's rows that are left, and learn from the next update on; only where the
        closed-form candidate is one of them and can serve (no ``fusion``): the copies
        alone, with EMA fusion, fell behind ``head_lr`` alone (tests/test_golden.py's
        growth scenario, 0.385 against 0.565 accuracy; DEFAULTS.md, "Candidates at a
        concept change")."""
        rates = self.rates
        if not (_rates_apply(rates, s) and rates.off and rates.wants_lda and s.fusion is None):
            return
        with self.rng.generator() as gen:
            rates.start_at_change(self.head, s.optimizer, self._memory_features(gen))

    def _memory_features(self, gen):
        """``(feats, y, gen)``: the trunk's features of the replay memory's rows (a
        uniform sample of ``MEMORY_HEAD_ROWS`` of a larger memory) and their class indices,
        for the head's closed-form candidate to start from; None for an empty or
        sparse memory."""
        memory = self.memory
        if not len(memory) or self.sparse or self.settings.memory_size == 0:
            return None
        X, y = memory.X, memory.y
        if len(y) > MEMORY_HEAD_ROWS:
            idx = torch.randperm(len(y), generator=gen)[:MEMORY_HEAD_ROWS].to(y.device)
            X, y = X.index_select(0, idx), y.index_select(0, idx)
        with torch.no_grad():
            return trunk_forward(self.trunk)(X), y, gen

    def _look(self, rows, s: Settings, seen: int, watch, rates, fresh, forward) -> bool:
        """Predict the chunk before learning it: each of the head's rates is scored on
        it (``rates``), and a fresh head against the head (``fresh``), which it
        replaces when it leads; the errors of the served weights feed the drift monitor
        (``watch``), which may start a fresh head. One pass of the trunk serves all
        when the live weights are served (``forward``: the trunk's, for features).
        Returns whether a fresh head took over."""
        pred, took_over = None, False
        learning = fresh and self.fresh.active
        rows, positions = watched(rows, self.rng)
        if rates or learning:
            feats = features(forward, rows, s.batch(len(rows)))
            if rates:
                pred = self.rates.score(feats, rows.y, rows.w, self.mask)
            else:
                z = self.head(feats)
                pred = argmax_rows(z if self.mask is None else z + self.mask)
            if learning:
                self.fresh.score(feats, rows.y, rows.w, self.mask, pred)
                if self.fresh.decide():
                    self.fresh.take_over(self.head, self.head_optimizer, self.rates)
                    self.fusion.restart()
                    took_over = True
        if watch:
            served = pred is not None and self.served[1] is self.head
            pred = pred.cpu().numpy() if served else None
            self._watch(rows, s, seen, pred, fresh, positions, forward)
        return took_over

    def _watch(self, rows, s: Settings, seen: int, pred, fresh, positions, forward) -> None:
        """Feed the errors of the served weights' predictions ``pred`` of the chunk's
        rows (made here when None; ``forward``: the trunk's, built for the update), at
        ``positions`` of it, to the drift monitor (per task: the errors of the rows
        labelled for it); a drift it reacts to starts a fresh head (``fresh``)."""
        if pred is None:
            trunk, head = self.served
            trunk = forward if trunk is self.trunk else trunk
            pred = predict_rows(trunk, head, rows, s.batch(len(rows)), self.mask, self.tasks)
        if self.tasks is None:
            if self.drift.observe(pred != rows.labels, seen, positions):
                # Same inputs, other labels: the rows of the chunk's classes go, and
                # a fresh head learns the new concept (new inputs keep both).
                held = self.memory.seen.numpy().copy()  # classes held before forgetting
                changed = bool(len(self.memory)) and self.memory.forget_contradicted(
                    rows.numpy(), rows.labels
                )  # fmt: skip
                if changed:
                    if fresh:
                        self.fresh.begin(self.head, rows.labels, held)
                    if self.rates is not None:
                        self.rates.forget(np.unique(rows.labels))
                if self.rates is not None and (changed or _new_classes(rows.labels, held, s)):
                    self._start_rates_at_change(s)
                self.fusion.restart()
            return
        labels = rows.labels
        at = np.arange(len(labels)) if positions is None else positions
        labelled = [labels[:, t] >= 0 for t in range(len(self.tasks))]
        errors = [(pred[:, t] != labels[:, t])[has] for t, has in enumerate(labelled)]
        reacted = self.drift.observe(errors, seen, [at[has] for has in labelled])
        for t in reacted:
            if len(self.memory):
                X = rows.numpy()[np.flatnonzero(labelled[t])]
                self.memory.forget_contradicted(X, labels[labelled[t], t])
        if reacted:
            self.fusion.restart()

    def _trunk_then_head(self, rows, s, memory, gen, txn, rates, forward) -> tuple:
        """The two phases; returns the trunk's mean loss, the steps skipped, whether
        the update was undone, and the trunk's features of the chunk's rows when it
        computed them (None otherwise)."""
        loss, taken, skipped = float("nan"), 0, 0
        chunk = None
        backup = fresh = None
        batch = s.batch(len(rows))
        mask = self.mask
        if s.trunk_epochs and s.trunk_lr > 0:
            penalty = None if self.anchor is None else self.anchor.penalty(
                s.regularization, s.reg_strength
            )  # fmt: skip
            if rates:
                self.rates.train_through(self.head)
            self._mode(True, self.trunk, self.head)
            for _ in range(s.trunk_epochs):
                loss, t, k = train_epoch(
                    self.trunk, self.head, self.trunk_optimizer, self.trunk_params, rows,
                    batch, gen, memory=memory, penalty=penalty, mask=mask, tasks=self.tasks,
                    logit_replay=s.logit_replay,
                )  # fmt: skip
                taken, skipped = taken + t, skipped + k
            self._mode(False, self.trunk, self.head)
        feats = None
        if s.head_steps and (rows.w is None or bool(rows.w.sum() > 0)):
            # The head learns from a sample of a large chunk: a linear head's
            # full-batch gradient on a few hundred rows a class is close to the
            # chunk's, for less work.
            head_rows = rows.sample(head_budget(len(self.seen_classes)), gen)
            y, w, replayed = head_rows.y, head_rows.w, None
            if memory is not None and len(memory):
                replayed, y, w = head_replay(memory, y, w, gen)
            feats = head_features(forward, head_rows, batch, replayed)
            if head_rows is rows:
                chunk = feats[: len(rows)]
            self._mode(True, self.head)
            if rates:
                backup = copy.copy(self.rates)  # put back if the update is undone
                self.rates.fine_tune(
                    self.head, feats, y, w, s.head_steps, mask, s.head_lr, s.weight_decay,
                    s.optimizer == "adamw", new=len(head_rows), gen=gen,
                    closed_form=s.fusion is None,
                )  # fmt: skip
                k = 0
            elif self.tasks is None:
                k = fine_tune_head(
                    self.head, self.head_optimizer, self.head_params, feats, y, w,
                    s.head_steps, mask,
                )  # fmt: skip
            else:
                active = self.tasks.labelled(y.cpu().numpy())
                k = fine_tune_heads(
                    self.head, self.head_optimizer, feats, y, w, s.head_steps, mask,
                    self.tasks, active,
                )  # fmt: skip
            if self.fresh is not None and self.fresh.active:
                fresh = copy.copy(self.fresh)  # put back if the update is undone
                self.fresh.learn(
                    feats, y, w, s.head_steps, mask, s.head_lr, s.weight_decay,
                    s.optimizer == "adamw",
                )  # fmt: skip
            taken, skipped = taken + s.head_steps - k, skipped + k
            self._mode(False, self.head)
        undone = False
        if taken or skipped:
            if feats is None:
                feats = chunk = features(forward, rows, batch)
            # Finite weights can still give non-finite outputs (a huge step, a huge
            # pull, an input far out of range): such an update is undone too, checked
            # on the rows it learned from.
            undone = not txn.finite(self.head, feats)
        if undone:
            txn.rollback()
            if backup is not None:
                self.rates = backup
            if fresh is not None:
                self.fresh = fresh
            loss, skipped = float("nan"), skipped + taken
        return loss, skipped, undone, chunk

    def _mode(self, training: bool, *modules) -> None:
        if not self.mode_free:
            for m in modules:
                m.train(training)

    # ------------------------------------------------------------------ set-up
    def configure(self, settings: Settings) -> None:
        """Take the settings of this call (those of the last call again: nothing to
        do)."""
        if settings is self.settings:
            return
        self.settings = settings
        self.memory.capacity = settings.memory_size
        self.memory.strategy = settings.memory_strategy
        if self.rates is not None and self.rates.spec != settings.head_rates:
            self.rates = HeadRates(settings.head_rates)
        self.fusion = make_fusion(
            settings.fusion, settings.ema_decay, settings.wise_alpha, self.fusion
        )

    def _set_rates(self, s: Settings) -> None:
        if self.trunk_optimizer is None:
            self.make_optimizers()
        for opt, lr in ((self.trunk_optimizer, s.trunk_lr), (self.head_optimizer, s.head_lr)):
            for group in opt.param_groups:
                group["lr"], group["weight_decay"] = lr, s.weight_decay

    def make_optimizers(self) -> None:
        s = self.settings
        self.trunk_optimizer = make_optimizer(
            s.optimizer, self.trunk_params, s.trunk_lr, s.weight_decay, self._lazy(s.optimizer)
        )
        self.head_optimizer = make_optimizer(
            s.optimizer, self.head_params, s.head_lr, s.weight_decay
        )

    def _lazy(self, optimizer: str) -> bool:
        """Set up the sparse first layer for the optimizer about to be built: row-sparse
        gradients (and a lazy Adam) with ``"adam"``, its dense gradient otherwise.
        Returns whether the optimizer must be lazy."""
        lazy = optimizer == "adam"
        for layer in self.sparse_layers:
            layer.sparse_grad = lazy
        return lazy and bool(self.sparse_layers)

    def at_stake(self, X) -> dict | None:
        """For each weight of a wide sparse layer that an update on ``X`` changes only
        at some rows, those rows: the columns of ``X`` and of the replay memory's rows.
        None (everything at stake) when that layer moves as a whole: with dense
        gradients (built for an optimizer other than Adam)."""
        s = self.settings
        lazy = self.sparse_layers and all(layer.sparse_grad for layer in self.sparse_layers)
        if not (self.sparse and lazy and sp.issparse(X)):
            return None
        at_stake = np.zeros(X.shape[1], dtype=bool)
        at_stake[X.indices] = True
        if s.memory_size and len(self.memory):
            at_stake[self.memory.columns()] = True
        rows = torch.from_numpy(np.flatnonzero(at_stake).astype(np.int64)).to(self.device)
        return {layer.weight: rows for layer in self.sparse_layers}

    def see(self, labels: np.ndarray) -> None:
        """Count the classes in ``labels`` as shown by training."""
        if self.mask is None:  # every class shown already
            return
        if self.tasks is not None:
            labels = labels[labels >= 0]  # -1: a missing label
        seen = self.seen_classes.copy()  # replaced, not changed: a checkpoint keeps the old
        seen[np.unique(labels)] = True
        self.seen_classes = seen
        self._update_mask()

    def _update_mask(self) -> None:
        """``mask``: ``-inf`` for the classes no row has shown yet, 0 for the others,
        None when every class has been shown. Added to the logits of the loss and of
        predictions: such a class is neither trained against nor predicted, as a class
        that a growing label set does not have yet. Of several tasks, a task that no
        row has labelled yet keeps all its classes (0): a task cannot predict none."""
        self.mask = None
        if not self.seen_classes.all():
            mask = np.where(self.seen_classes, 0.0, -np.inf)
            for start, stop in () if self.tasks is None else self.tasks.bounds:
                if not self.seen_classes[start:stop].any():
                    mask[start:stop] = 0.0
            self.mask = torch.as_tensor(mask, dtype=self.dtype, device=self.device)

    def _check_anchor(self, s: Settings) -> None:
        if (
            s.regularization == "ewc"
            and s.reg_strength
            and self.anchor is not None
            and self.anchor.fisher is None
        ):
            raise ValueError(
                "regularization='ewc' needs the Fisher information estimated when the "
                "model was (pre)trained: set it before fit or the first partial_fit."
            )

    def capture_anchor(self, rows: Rows) -> None:
        """Remember the current weights as the pretrained start; for EWC, estimate the
        Fisher information on up to ``FISHER_ROWS`` rows."""
        fisher = None
        if self.settings.regularization == "ewc":
            n = min(len(rows), FISHER_ROWS)
            X = rows.take(slice(0, n))
            fisher = empirical_fisher(
                self.trunk, self.head, self.trunk_params, X, rows.y[:n], self.tasks
            )
        self.anchor = Anchor.capture(self.trunk_params, self.head_params, fisher)

    @property
    def params(self) -> list:
        return self.trunk_params + self.head_params

    def served_copy(self):
        """A copy of the served ``(trunk, head)`` that predicts as this learner does:
        the head's bias is ``-inf`` for the classes no row has shown yet."""
        if self.tasks is not None:
            raise ValueError(
                "to_skorch: skorch's NeuralNetClassifier predicts one label per row; this "
                f"model predicts {len(self.tasks)} (one per task). served_module_ is the "
                "network that predicts them (logits of the tasks side by side)."
            )
        trunk, head = copy.deepcopy(self.served)
        layer = output_layer(head, len(self.seen_classes))
        if self.mask is not None and layer is not None and layer.bias is not None:
            with torch.no_grad():
                layer.bias[torch.as_tensor(np.flatnonzero(~self.seen_classes))] = -torch.inf
        return trunk, head

    @property
    def served(self):
        """The ``(trunk, head)`` that predicts: the live one or the fusion's copy."""
        return self.fusion.served(self.trunk, self.head)

    # ------------------------------------------------------------------ pretraining
    def pretrain(self, rows: Rows, val=None) -> Pretraining:
        """Train every parameter on ``rows`` in shuffled mini-batches for up to
        ``max_iter`` epochs, stopping as MLPClassifier does (on the training loss, or on
        the accuracy on ``val = (X, y_idx)`` keeping the best weights)."""
        s = self.settings
        opt = make_optimizer(
            s.optimizer, self.params, s.lr, s.weight_decay, self._lazy(s.optimizer)
        )
        batch = s.batch(len(rows))
        stake = self.at_stake(rows.X)
        report = Pretraining(0, [], [] if val is not None else None, None, 0)
        self.see(rows.labels)
        mask = self.mask
        best, best_state, stall = np.inf, None, 0
        for epoch in range(s.max_iter):
            txn = Transaction(self.params, [opt], stake)
            self.module.train()
            with self.rng.scope(self.device, self.stochastic) as gen:
                loss, taken, k = train_epoch(
                    self.trunk, self.head, opt, self.params, rows, batch, gen, mask=mask,
                    tasks=self.tasks,
                )  # fmt: skip
            self.module.eval()
            with torch.no_grad():
                undone = not txn.finite(self.head, self.trunk(rows.take(slice(0, batch))))
            if undone:  # too high a learning rate: undo the epoch
                txn.rollback()
                loss, k = float("nan"), k + taken
            report.skipped += k
            report.n_iter = epoch + 1
            report.loss_curve.append(loss)
            if val is not None:
                score = self.accuracy(*val)
                report.validation_scores.append(score)
                objective = -score
            else:
                objective = loss
            if s.verbose:
                print(
                    f"epoch {epoch + 1}: loss {loss:.6f}"
                    + (f", validation accuracy {score:.4f}" if val is not None else "")
                )
            # An undone epoch (or one with no finite loss) is no improvement.
            stall = 0 if not undone and objective <= best - s.tol else stall + 1
            if objective < best:
                best = objective
                if val is not None:
                    best_state = snapshot(self.module)
            if stall > s.n_iter_no_change:
                break
        else:
            if self.rates is not None:  # a head still learning: head_lr alone
                self.rates.off = True
            warnings.warn(
                f"Stopped after max_iter={s.max_iter} epochs before the "
                "optimization converged; raise max_iter or tol.",
                ConvergenceWarning,
                stacklevel=4,
            )
        if best_state is not None:
            self.module.load_state_dict(best_state)
            report.best_validation_score = -best
        return report

    def finish_pretraining(self, rows: Rows) -> None:
        """After ``fit``: the pretrained weights become the anchor, the training rows
        seed the replay memory (what pretraining learned is what replay should keep from
        forgetting), and the fusion starts."""
        self.capture_anchor(rows)
        if self.settings.memory_size:
            with self.rng.generator() as gen:
                self.memory.offer(rows, self.settings.batch(len(rows)), gen)
        self.fusion.after_update(self.trunk, self.head, self.params, self.anchor)

    # ------------------------------------------------------------------ growth
    def grow(self, positions: np.ndarray, n_classes: int, task: int | None = None) -> None:
        """Grow the head (of several tasks, task ``task``'s head) to ``n_classes``
        outputs, old class ``i`` moving to ``positions[i]``: known classes keep their
        weights and optimizer state exactly, new ones start as a fresh ``nn.Linear`` row
        would; every component follows (of several tasks, the global label indices)."""
        labels, tasks = positions, None
        if task is None:
            layer = output_layer(self.head, len(positions))
        else:
            layer = self.head.heads[task]
            sizes = [n_classes if t == task else size for t, size in enumerate(self.tasks.sizes)]
            tasks = Tasks(sizes)
            labels = label_map(self.tasks, task, positions, tasks)
        optimizers = [o for o in (self.head_optimizer, self.trunk_optimizer) if o is not None]
        old_head_params = self.head_params
        with self.rng.generator() as gen:
            pairs = grow_linear(layer, positions, n_classes, optimizers, gen)
            self.head_params = [p for p in self.head.parameters() if p.requires_grad]
            growth = Growth(
                positions, n_classes, pairs, old_head_params, self.head_params, gen,
                self.device, task=task, label_map=labels,
            )  # fmt: skip
            for _, component in self._components():
                component.grow(growth)
        if tasks is not None:
            self.tasks = tasks
        # New classes come with the chunk that shows them: they count as seen.
        seen = np.ones(n_classes if tasks is None else tasks.offsets[-1], dtype=bool)
        seen[labels] = self.seen_classes
        self.seen_classes = seen
        self._update_mask()

    def add_task(self, n_classes: int) -> None:
        """Of several tasks: a head for a new task with ``n_classes`` classes, a fresh
        ``nn.Linear`` over the trunk's features. Earlier heads, their optimizer state
        and the trunk are kept exactly; the replay memory's rows lack the new task's
        label, and its drift is watched from now on."""
        width = self.head.heads[0].in_features
        with self.rng.generator() as gen:
            # Initialised from the learner's random stream, as grown rows are; skip_init
            # leaves torch's global generator alone.
            head = torch.nn.utils.skip_init(torch.nn.Linear, width, n_classes)
            bound = 1.0 / math.sqrt(width)
            with torch.no_grad():
                for p in head.parameters():
                    p.copy_(torch.empty_like(p).uniform_(-bound, bound, generator=gen))
        head = head.to(device=self.device, dtype=self.dtype)
        self.head.heads.append(head)
        params = [p for p in head.parameters() if p.requires_grad]
        self.head_params = self.head_params + params
        if self.head_optimizer is not None:
            group = self.head_optimizer.param_groups[0]
            group["params"] = group["params"] + params
        if self.anchor is not None:
            self.anchor.add_head(params)
        self.fusion.add_head(head)
        self.memory.add_task()
        self.drift.add_task()
        self.tasks = Tasks(self.head.sizes)
        self.seen_classes = np.concatenate([self.seen_classes, np.zeros(n_classes, bool)])
        self._update_mask()

    def accuracy(self, X, y_idx) -> float:
        """Accuracy of the served weights on a checked X: of one task, the share of rows
        right; of several, the share of labelled entries right."""
        if self.tasks is None:
            return float(np.mean(self.forward(X, argmax_rows) == y_idx))
        pred = self.forward(X, self.tasks.argmax) + self.tasks.offsets[:-1]
        labelled = y_idx >= 0
        return float(np.mean(pred[labelled] == y_idx[labelled]))

    # ------------------------------------------------------------------ inference
    def forward(self, X, post=None) -> np.ndarray:
        """``post`` of the served logits of a checked X (array in the network's dtype,
        or CSR matrix, densified a batch at a time), as a numpy array."""
        trunk, head = self.served
        if not sp.issparse(X):
            z = forward(trunk, head, to_tensor(X, self.dtype), post, self.gpu, 0, self.mask)
            return z.cpu().numpy()
        if self.sparse:
            step = FORWARD_ROWS

            def rows(sl):
                return csr_rows(X, sl, dtype=self.dtype)
        else:
            step = self.settings.batch(X.shape[0])

            def rows(sl):
                return to_tensor(X[sl].toarray(), self.dtype)

        parts = [
            forward(trunk, head, rows(slice(s, s + step)), post, self.gpu, s, self.mask)
            for s in range(0, X.shape[0], step)
        ]
        return torch.cat(parts).cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def _components(self):
        for name in ("memory", "anchor", "fusion", "drift", "rates", "fresh"):
            component = getattr(self, name)
            if component is not None:
                yield name, component

    def state_dict(self) -> dict:
        """Everything but the module's weights, as CPU tensors and plain values."""
        state = {"rng": self.rng.state, "seen_classes": self.seen_classes.tolist()}
        if self.trunk_optimizer is not None:
            state["trunk_optimizer"] = self.trunk_optimizer.state_dict()
            state["head_optimizer"] = self.head_optimizer.state_dict()
        for name, component in self._components():
            state[name] = component.state_dict()
        return to_cpu(state)

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` wrote, after :meth:`configure`."""
        self.rng.state = state["rng"]
        # Files of format 2 do not say: every class counts as shown, as it then did.
        self.seen_classes = np.array(
            state.get("seen_classes", [True] * len(self.seen_classes)), dtype=bool
        )
        self._update_mask()
        if "trunk_optimizer" in state:
            self.make_optimizers()
            self.trunk_optimizer.load_state_dict(state["trunk_optimizer"])
            self.head_optimizer.load_state_dict(state["head_optimizer"])
        if "anchor" in state:
            self.anchor = Anchor.from_state_dict(state["anchor"], self.device)
        self.memory.load_state_dict(state["memory"])
        self.fusion.load_state_dict(state["fusion"], self.trunk, self.head)
        self.drift.load_state_dict(state["drift"])
        if self.rates is not None:
            self.rates.load_state_dict(state.get("rates"), self.device)
        if self.fresh is not None:
            self.fresh.load_state_dict(state.get("fresh"), self.device)
