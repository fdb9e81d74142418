"""Speed of skocl's ``partial_fit`` and ``predict`` against plain-PyTorch floors and peers.

Run from the repository root::

    python benchmarks/bench_speed.py            # full run (2-4 minutes on 2 shared cores)
    python benchmarks/bench_speed.py --quick    # short run, for a smoke test
    python benchmarks/bench_speed.py --profile  # also cProfile skocl's hot calls

Everything runs in one process with ``torch.set_num_threads(1)`` (and BLAS limited to
one thread through threadpoolctl, so that numpy-based peers are single-threaded too).
Contenders of a case are timed side by side in interleaved rounds: each round times
every contender once on a batch of calls (the order rotates from round to round), and
the reported figure is the median over rounds of the mean time per call, in
microseconds, with its ratio to a plain-PyTorch floor (and, as a check on noise, the
median over rounds of the per-round ratio). The process's CPU time per call is recorded
alongside the wall-clock time: on a shared machine it leaves out the time spent waiting
for a core, so its ratio is the steadier one; the targets are judged on wall-clock
time. The garbage collector is off inside a timed batch (as in ``timeit``) and
collected before each case.

Two skocl configurations are measured, each against a floor that does the same update
by hand (see ``skocl/_learner.py::OnlineLearner.update``), with the default network
(Linear(20,256)-ReLU trunk, Linear(256,3) head):

* **core**: ``OnlineFineTuneClassifier(memory_size=0, drift_detector=None)`` against
  ``PlainTorch``: a trunk pass in mini-batches of ``min(200, n)`` (shuffled when ``n``
  exceeds the batch) with fused Adam at lr 1e-3 moving the trunk only, then the trunk's
  features of the whole chunk computed once in eval mode and three full-chunk steps of
  fused Adam at lr 1e-2 on the head (autograd);
* **defaults**: ``OnlineFineTuneClassifier()`` against ``PlainTorchDefaults``, which
  adds to that update what the defaults add: the chunk predicted before learning
  (of more than 2,048 rows, a uniform sample of 2,048) and its 0/1 errors fed to
  river's ``ADWIN`` (with skocl's reaction to a drift on which the error rises), each
  trunk mini-batch joined by as many rows drawn from a replay memory (of a chunk larger
  than the memory, as many as it holds in all, spread over the mini-batches), the head
  fine-tuned on the chunk plus as many replayed rows weighing as much as the chunk,
  and the chunk then offered to the memory, each row kept with the network's logits
  for it, which the trunk's loss then replays (``logit_replay=0.1``: a tenth of the
  replayed rows' mean squared gap to them). The floors take autograd's gradients,
  where skocl writes the default network's backward pass out (``skocl/_mlp_grads.py``):
  the check below allows for the rounding that this moves. The memory's bookkeeping (the
  class-balanced reservoir) is skocl's own ``skocl._continual.ReplayMemory``: a second
  implementation of it would measure nothing different.

Peers: skorch's ``NeuralNetClassifier`` on the same network (``max_epochs=1``,
``train_split=None``, ``batch_size=200``, Adam at lr 1e-3), ``MLPClassifier(
hidden_layer_sizes=(256,))`` and ``SGDClassifier()``. skorch's ``partial_fit`` slows
down as its history grows, so it appears twice: with its history cleared before each
timed batch (its best case), and, on 32-row chunks, as a user gets it after 1,000
calls (its history cut back to 1,000 epochs before each timed batch).

Before timing, the script starts each floor and its skocl configuration from the same
weights and the same random stream and checks that they end up with the same weights
(and, for the defaults, the same replay memory and drifts) after a series of calls.

Results are printed as markdown tables and written to ``benchmarks/results/speed.json``.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)

import argparse  # noqa: E402
import copy  # noqa: E402
import cProfile  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import river  # noqa: E402
import sklearn  # noqa: E402
import skorch  # noqa: E402
from river.drift import ADWIN  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.utils.multiclass import check_classification_targets  # noqa: E402
from sklearn.utils.validation import validate_data  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import skocl  # noqa: E402
from skocl import OnlineFineTuneClassifier  # noqa: E402
from skocl._continual import ReplayMemory  # noqa: E402
from skocl._drift import WATCH_ROWS  # noqa: E402
from skocl._learner import head_budget  # noqa: E402

N_FEATURES, N_CLASSES, HIDDEN = 20, 3, 256
MEMORY_SIZE = 2000
CLASSES = np.arange(N_CLASSES)
RESULTS = Path(__file__).resolve().parent / "results" / "speed.json"
# skocl code the timed calls run
HOT_PATH = (
    "_classifier.py",
    "_serving.py",
    "_validation.py",
    "_learner.py",
    "_steps.py",
    "_rows.py",
    "_continual.py",
    "_drift.py",
    "_fusion.py",
)
# Epochs of history the "as a user gets it" skorch net holds at the start of each batch.
SKORCH_HISTORY = 1000

FLOOR_CORE = "plain torch, core update (floor)"
FLOOR_DEFAULTS = "plain torch, default update (floor)"
FLOOR_PREDICT = "plain torch forward (floor)"
SKOCL_CORE = "skocl core (memory_size=0, drift_detector=None)"
SKOCL_DEFAULTS = "skocl defaults"
SKORCH = "skorch (history cleared before each batch)"
SKORCH_KEPT = f"skorch (history kept, {SKORCH_HISTORY:,} prior calls)"
MLP = "sklearn MLPClassifier"
SGD = "sklearn SGDClassifier"
NAIVE = "naive validation only (validate_data + check_classification_targets)"
PEERS = (SKORCH, SKORCH_KEPT, MLP, SGD)
# skocl starts from the floors' network (a module of the user's), which counts as a
# trained head: by default its head would be fine-tuned at three rates (head_rates),
# the floors at one. head_rates=(1.0,) keeps the update the floors do;
# bench_head_rates.py measures what the three rates cost (0.97-1.10x). Likewise the
# floors start no fresh head at a concept change (fresh_head); the drift in the timed
# stream would start one, which takes over: fresh_head=False keeps the floors' update,
# and bench_fresh_head.py measures what a learning fresh head costs (about 1.25x).
ONE_RATE = {"head_rates": (1.0,), "fresh_head": False}
LOGIT_REPLAY = 0.1  # the defaults' logit_replay
CONFIGS = {
    "core": {
        "skocl": SKOCL_CORE,
        "floor": FLOOR_CORE,
        "params": {"memory_size": 0, "drift_detector": None, **ONE_RATE},
    },
    "defaults": {"skocl": SKOCL_DEFAULTS, "floor": FLOOR_DEFAULTS, "params": ONE_RATE},
}
# What each contender's ratio is taken against (everything else: the core floor).
COMPARED_WITH = {FLOOR_CORE: FLOOR_CORE, SKOCL_DEFAULTS: FLOOR_DEFAULTS}


# --------------------------------------------------------------------------- contenders
class TrunkHead(nn.Module):
    """The default skocl architecture: Linear(20,256)-ReLU trunk, Linear(256,3) head."""

    def __init__(self, n_features=N_FEATURES, n_classes=N_CLASSES, hidden=HIDDEN):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x):
        return self.head(self.trunk(x))


class PlainTorch:
    """The core floor: skocl's online update without memory or drift detection, as a
    plain torch loop."""

    def __init__(self, module: TrunkHead, seed: int = 0):
        self.trunk, self.head = module.trunk, module.head
        self.trunk_params = list(self.trunk.parameters())
        self.trunk_opt = torch.optim.Adam(self.trunk_params, lr=1e-3, fused=True)
        self.head_opt = torch.optim.Adam(self.head.parameters(), lr=1e-2, fused=True)
        self.gen = torch.Generator()
        self.gen.manual_seed(seed)

    def partial_fit(self, X, y):
        X = torch.from_numpy(X.astype(np.float32))
        y = torch.from_numpy(y.astype(np.int64))
        n = len(y)
        batch_size = min(200, n)

        # 1. trunk update: one pass in mini-batches, the head fixed
        self.trunk.train()
        order = torch.randperm(n, generator=self.gen) if n > batch_size else None
        for start in range(0, n, batch_size):
            if order is None:
                xb, yb = X, y
            else:
                idx = order[start : start + batch_size]
                xb, yb = X[idx], y[idx]
            loss = F.cross_entropy(self.head(self.trunk(xb)), yb)
            grads = torch.autograd.grad(loss, self.trunk_params)
            for p, g in zip(self.trunk_params, grads, strict=True):
                p.grad = g
            self.trunk_opt.step()

        # 2. head fine-tune on the frozen trunk's features (of a uniform sample of
        #    head_budget(classes) rows of a larger chunk)
        self.trunk.eval()
        X, y = self.head_rows(X, y)
        with torch.no_grad():
            feats = self.trunk(X)
        for _ in range(3):
            self.head_opt.zero_grad()
            loss = F.cross_entropy(self.head(feats), y)
            loss.backward()
            self.head_opt.step()
        return self

    def head_rows(self, X, y):
        budget = head_budget(self.head.out_features)
        if len(y) <= budget:
            return X, y
        idx = torch.randperm(len(y), generator=self.gen)[:budget]
        return X[idx], y[idx]

    def predict(self, x):
        with torch.inference_mode():
            return self.head(self.trunk(torch.from_numpy(x.astype(np.float32)))).argmax(1).numpy()


class PlainTorchDefaults(PlainTorch):
    """The defaults floor: skocl's default online update (replay memory, ADWIN drift
    detection) in plain torch and numpy.

    The memory's bookkeeping, the class-balanced reservoir, is skocl's ``ReplayMemory``
    (its ``add`` and ``drop_classes``); drawing replayed rows is written out here.
    """

    def __init__(self, module: TrunkHead, seed: int = 0):
        super().__init__(module, seed)
        cpu = torch.device("cpu")
        self.memory = ReplayMemory(MEMORY_SIZE, "class_balanced", N_FEATURES, torch.float32, cpu)
        self.detector = ADWIN()
        self.drifts: list[int] = []
        self.error_level: float | None = None
        self.n_seen = 0

    def replay(self, k):
        idx = torch.randint(len(self.memory), (min(len(self.memory), k),), generator=self.gen)
        return self.memory.X[idx], self.memory.y[idx], self.memory.Z[idx]

    def partial_fit(self, X, y):
        Xn = X.astype(np.float32)
        X = torch.from_numpy(Xn)
        y = torch.from_numpy(y.astype(np.int64))
        n = len(y)
        batch_size = min(200, n)
        memory = self.memory

        # 0. prequential errors of the chunk (predicted before learning) fed to ADWIN;
        #    on a drift while the chunk's error rate is above its recent level (an
        #    exponential average over chunks), drop the memory's rows of the chunk's
        #    classes when the chunk's inputs look like the memory's. (skocl's first
        #    call, which builds the model, does not watch for drift.)
        #    A chunk of more than WATCH_ROWS rows is watched through a uniform sample of
        #    that many, in stream order.
        if self.n_seen:
            at = torch.arange(n)
            if n > WATCH_ROWS:
                at = torch.randperm(n, generator=self.gen)[:WATCH_ROWS].sort().values
            Xw, yw = X[at], y[at]
            with torch.inference_mode():
                wrong = (self.head(self.trunk(Xw)).argmax(1) != yw).tolist()
            drifted = False
            for i, e in enumerate(wrong):
                self.detector.update(int(e))
                if self.detector.drift_detected:
                    self.drifts.append(self.n_seen + int(at[i]) + 1)
                    drifted = True
            rate, level = sum(wrong) / len(wrong), self.error_level
            self.error_level = rate if level is None else 0.8 * level + 0.2 * rate
            if drifted and (level is None or rate > level) and len(memory):
                self.forget_contradicted(Xn[at.numpy()], yw.numpy())

        # 1. trunk update: each mini-batch joined by as many replayed rows (of a chunk
        #    larger than the memory, as many as the memory holds in all)
        share = 1.0 if len(memory) >= n else len(memory) / n
        self.trunk.train()
        order = torch.randperm(n, generator=self.gen) if n > batch_size else None
        for start in range(0, n, batch_size):
            if order is None:
                xb, yb = X, y
            else:
                idx = order[start : start + batch_size]
                xb, yb = X[idx], y[idx]
            zm = None
            if len(memory):
                xm, ym, zm = self.replay(math.ceil(len(yb) * share))
                xb, yb = torch.cat([xb, xm]), torch.cat([yb, ym])
            logits = self.head(self.trunk(xb))
            loss = F.cross_entropy(logits, yb)
            if zm is not None:  # dark experience replay: the kept logits replayed too
                loss = loss + LOGIT_REPLAY * F.mse_loss(logits[len(yb) - len(zm) :], zm)
            grads = torch.autograd.grad(loss, self.trunk_params)
            for p, g in zip(self.trunk_params, grads, strict=True):
                p.grad = g
            self.trunk_opt.step()

        # 2. head fine-tune on the chunk's features and as many replayed rows', the two
        #    halves weighing the same
        self.trunk.eval()
        Xh, yh = self.head_rows(X, y)
        nh = len(yh)
        with torch.no_grad():
            feats = self.trunk(Xh)
            if len(memory):
                xm, ym, _ = self.replay(nh)
                feats = torch.cat([feats, self.trunk(xm)])
        for _ in range(3):
            self.head_opt.zero_grad()
            logits = self.head(feats)
            loss = F.cross_entropy(logits[:nh], yh)
            if len(memory):
                loss = 0.5 * (loss + F.cross_entropy(logits[nh:], ym))
            loss.backward()
            self.head_opt.step()

        # 3. the chunk offered to the memory, each row kept with its logits now
        with torch.no_grad():
            kept = self.head(feats[:nh] if nh == n else self.trunk(X))
        memory.add(X, y, self.gen, None, kept)
        self.n_seen += n
        return self

    def forget_contradicted(self, X, y):
        Xc, Xm = X.astype(np.float64), self.memory.X.double().numpy()
        var = Xc.var(axis=0) / len(Xc) + Xm.var(axis=0) / len(Xm)
        diff = np.abs(Xc.mean(axis=0) - Xm.mean(axis=0))
        z = np.divide(diff, np.sqrt(var), out=np.zeros_like(diff), where=var > 0)
        z[(var == 0) & (diff > 0)] = np.inf
        if np.mean(np.minimum(z, 1e6)) < 2.0:
            self.memory.drop_classes(np.unique(y))


def make_skorch():
    torch.manual_seed(0)
    return NeuralNetClassifier(
        module=TrunkHead(),
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        train_split=None,
        max_epochs=1,
        batch_size=200,
        verbose=0,
    )


def make_models(chunks):
    """Every contender, fitted once on a first chunk (the warm-up call); the skorch net
    whose history is kept gets its ``SKORCH_HISTORY`` prior calls."""
    X_first, y_first = chunks[0]
    torch.manual_seed(0)
    floor_core = PlainTorch(TrunkHead()).partial_fit(X_first, y_first)
    torch.manual_seed(0)
    floor_defaults = PlainTorchDefaults(TrunkHead()).partial_fit(X_first, y_first)
    models = {"floor core": floor_core, "floor defaults": floor_defaults}
    for name, config in CONFIGS.items():
        clf = OnlineFineTuneClassifier(random_state=0, **config["params"])
        models[f"skocl {name}"] = clf.partial_fit(X_first, y_first, classes=CLASSES)
    for name in ("skorch", "skorch kept"):
        models[name] = make_skorch()
        models[name].partial_fit(X_first.astype(np.float32), y_first, classes=CLASSES)
    kept = models["skorch kept"]
    for i in range(1, SKORCH_HISTORY):
        X, y = chunks[i % len(chunks)]
        kept.partial_fit(X.astype(np.float32), y)
    mlp = MLPClassifier(hidden_layer_sizes=(HIDDEN,), random_state=0)
    models["mlp"] = mlp.partial_fit(X_first, y_first, classes=CLASSES)
    sgd = SGDClassifier(random_state=0)
    models["sgd"] = sgd.partial_fit(X_first, y_first, classes=CLASSES)
    return models


def partial_fit_contenders(m, small):
    """The partial_fit callables, and what to run (untimed) before each of their batches.

    skorch appends an epoch to ``net.history`` on every ``partial_fit`` and its cost per
    call grows with the length of that history. One skorch net has its history cleared
    before each timed batch (its cost with at most one batch of calls recorded, its
    best case); the other, as a user gets it, has its history cut back to its first
    ``SKORCH_HISTORY`` epochs before each batch, so every batch starts after that many
    prior calls. The second one is timed on small chunks only.
    """
    sk, kept = m["skorch"], m["skorch kept"]
    contenders = {
        FLOOR_CORE: m["floor core"].partial_fit,
        SKOCL_CORE: m["skocl core"].partial_fit,
        FLOOR_DEFAULTS: m["floor defaults"].partial_fit,
        SKOCL_DEFAULTS: m["skocl defaults"].partial_fit,
        SKORCH: lambda X, y: sk.partial_fit(X.astype(np.float32), y),
    }
    resets = {SKORCH: sk.history.clear}
    if small:
        contenders[SKORCH_KEPT] = lambda X, y: kept.partial_fit(X.astype(np.float32), y)

        def cut_history():
            del kept.history[SKORCH_HISTORY:]

        resets[SKORCH_KEPT] = cut_history
    contenders[MLP] = m["mlp"].partial_fit
    contenders[SGD] = m["sgd"].partial_fit
    return contenders, resets


def predict_contenders(m):
    sk = m["skorch"]
    return {
        FLOOR_PREDICT: m["floor core"].predict,
        SKOCL_CORE: m["skocl core"].predict,
        SKOCL_DEFAULTS: m["skocl defaults"].predict,
        "skorch NeuralNetClassifier": lambda X: sk.predict(X.astype(np.float32)),
        MLP: m["mlp"].predict,
        SGD: m["sgd"].predict,
    }


def naive_validation(est):
    """What a generic estimator does to a chunk: validate_data + target check."""

    def validate(X, y):
        X, y = validate_data(
            est, X, y, accept_sparse="csr", dtype=(np.float64, np.float32), reset=False
        )
        check_classification_targets(y)

    return validate


# --------------------------------------------------------------------------- timing
def time_batch(fn, args, calls):
    """Mean wall-clock and CPU seconds per call of ``fn(*args[i % len(args)])`` over
    ``calls`` calls.

    CPU time (of the whole process) leaves out the time the process waits for a core,
    which on a shared machine is most of the noise in wall-clock time.
    """
    k = len(args)
    gc.disable()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(calls):
            fn(*args[i % k])
        t1, c1 = time.perf_counter(), time.process_time()
    finally:
        gc.enable()
    return (t1 - t0) / calls, (c1 - c0) / calls


def calibrate(fn, args, batch_s, max_calls, reset=None):
    """Calls per batch so that a batch takes about ``batch_s`` seconds."""
    if reset is not None:
        reset()
    if max_calls == 1:
        fn(*args[0])  # one more warm-up call
        return 1
    per_call = min(time_batch(fn, args, 3)[0] for _ in range(3))
    return int(max(1, min(max_calls, round(batch_s / per_call))))


def run_case(name, contenders, args, rounds, batch_s, max_calls, floor, info=(), resets=None):
    """Interleaved rounds: each round times every contender once; medians over rounds.

    ``resets`` maps a contender to a callable run, untimed, before each of its batches.
    A contender's ratio is to the contender ``COMPARED_WITH`` names for it, ``floor``
    otherwise.
    """
    names = list(contenders)
    resets = resets or {}
    calls = {n: calibrate(contenders[n], args, batch_s, max_calls, resets.get(n)) for n in names}
    samples = {n: [] for n in names}
    cpu = {n: [] for n in names}
    gc.collect()
    load = os.getloadavg()[0]
    t_start = time.perf_counter()
    for r in range(rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            if n in resets:
                resets[n]()
            wall, cpu_s = time_batch(contenders[n], args, calls[n])
            samples[n].append(wall * 1e6)
            cpu[n].append(cpu_s * 1e6)
    elapsed = time.perf_counter() - t_start
    rows = []
    for n in names:
        ref = COMPARED_WITH.get(n, floor)
        ref = ref if ref in names else floor
        s = sorted(samples[n])
        q = statistics.quantiles(s, n=4) if len(s) > 1 else [s[0]] * 3
        med = statistics.median(s)
        paired = statistics.median(a / b for a, b in zip(samples[n], samples[ref], strict=True))
        cpu_med = statistics.median(cpu[n])
        rows.append(
            {
                "case": name,
                "contender": n,
                "compared_with": ref,
                "info_only": n in info,
                "median_us": med,
                "p25_us": q[0],
                "p75_us": q[2],
                "min_us": s[0],
                "ratio": med / statistics.median(samples[ref]),
                "median_paired_ratio": paired,
                "calls_per_round": calls[n],
                "rounds": rounds,
                "cpu_median_us": cpu_med,
                "cpu_ratio": cpu_med / statistics.median(cpu[ref]),
                "samples_us": samples[n],
                "cpu_samples_us": cpu[n],
                "load_average_1min_at_start": load,
            }
        )
    print(f"  {name}: {rounds} rounds in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------- checks
def weights(params):
    return torch.cat([p.detach().flatten() for p in params])


def check_same_update(config, X, y, sizes, shift_from=None):
    """A floor and its skocl configuration, started from the same weights and random
    stream, end every call of a series with the same weights (and, for the defaults,
    the same replay memory and the same drifts).

    From chunk ``shift_from`` on, every label ``c`` becomes ``c + 1 mod 3``: a concept
    drift, so that the defaults' reaction to a drift (dropping contradicted memory
    rows) is checked too.
    """
    torch.manual_seed(123)
    start = TrunkHead()
    floor_cls = PlainTorch if config == "core" else PlainTorchDefaults
    floor = floor_cls(copy.deepcopy(start))
    ours = OnlineFineTuneClassifier(
        module=copy.deepcopy(start), random_state=0, **CONFIGS[config]["params"]
    )
    pos, diffs, memory_equal, memory_rows = 0, [], [], []
    aligned = False
    for i, n in enumerate(sizes):
        Xc, yc = X[pos : pos + n], y[pos : pos + n]
        pos += n
        if shift_from is not None and i >= shift_from:
            yc = (yc + 1) % N_CLASSES
        if i == 0:
            ours.partial_fit(Xc, yc, classes=CLASSES)
            # The same random stream from here on (the first call, 32 rows into an
            # empty memory, draws nothing): the learner's stream, as a state tensor.
            floor.gen.set_state(ours.learner_.rng.state.clone())
            aligned = True
        else:
            ours.partial_fit(Xc, yc)
        floor.partial_fit(Xc, yc)
        floor_params = (*floor.trunk.parameters(), *floor.head.parameters())
        diffs.append(
            float((weights(ours.module_.parameters()) - weights(floor_params)).abs().max())
        )
        if config == "defaults":
            mem = ours.learner_.memory
            memory_equal.append(
                mem is not None
                and torch.equal(mem.X, floor.memory.X)
                and torch.equal(mem.y, floor.memory.y)
            )
            memory_rows.append(len(floor.memory))
    out = {
        "config": config,
        "chunk_sizes": list(sizes),
        "labels_shifted_from_chunk": shift_from,
        "random_stream_aligned": aligned,
        "max_abs_weight_diff_after_each_call": diffs,
        "same": max(diffs) < 1e-5,
    }
    if config == "defaults":
        out["memory_equal_after_each_call"] = memory_equal
        out["memory_rows_after_each_call"] = memory_rows
        out["drifts_skocl"] = list(ours.drifts_)
        out["drifts_floor"] = floor.drifts
        out["same"] = out["same"] and all(memory_equal) and ours.drifts_ == floor.drifts
    return out


# --------------------------------------------------------------------------- targets
def evaluate_targets(rows):
    by = {(r["case"], r["contender"]): r for r in rows}
    out = []

    def add(config, case, text, ok, measured, ok_cpu):
        out.append(
            {
                "config": config,
                "case": case,
                "target": text,
                "measured": measured,
                "pass": bool(ok),
                "pass_on_cpu_time": bool(ok_cpu),
            }
        )

    def ratio(r):
        return f"{r['ratio']:.2f}x (CPU time {r['cpu_ratio']:.2f}x)"

    for config, spec in CONFIGS.items():
        ours = spec["skocl"]
        c = "partial_fit 32x20"
        r = by[(c, ours)]
        add(
            config,
            c,
            "within 1.3x of its floor",
            r["ratio"] <= 1.3,
            ratio(r),
            r["cpu_ratio"] <= 1.3,
        )
        peers = [by[(c, p)] for p in PEERS if (c, p) in by]
        fastest = min(peers, key=lambda x: x["median_us"])
        fastest_cpu = min(x["cpu_median_us"] for x in peers)
        add(
            config,
            c,
            "faster than every peer",
            r["median_us"] < fastest["median_us"],
            f"{fmt_us(r['median_us'])} µs vs fastest peer, {fastest['contender']}, "
            f"{fmt_us(fastest['median_us'])} µs (CPU time {fmt_us(r['cpu_median_us'])} vs "
            f"{fmt_us(fastest['cpu_median_us'])} µs)",
            r["cpu_median_us"] < fastest_cpu,
        )
        c = "partial_fit 100000x20"
        r = by[(c, ours)]
        add(
            config,
            c,
            "within 1.1x of its floor",
            r["ratio"] <= 1.1,
            ratio(r),
            r["cpu_ratio"] <= 1.1,
        )
        c = "predict 1 row"
        r, sgd = by[(c, ours)], by[(c, SGD)]
        add(
            config,
            c,
            "within 1.5x of plain torch",
            r["ratio"] <= 1.5,
            ratio(r),
            r["cpu_ratio"] <= 1.5,
        )
        add(
            config,
            c,
            "faster than SGDClassifier.predict",
            r["median_us"] < sgd["median_us"],
            f"{fmt_us(r['median_us'])} µs vs {fmt_us(sgd['median_us'])} µs (CPU time "
            f"{fmt_us(r['cpu_median_us'])} vs {fmt_us(sgd['cpu_median_us'])} µs)",
            r["cpu_median_us"] < sgd["cpu_median_us"],
        )
        c = "predict 10000 rows"
        r = by[(c, ours)]
        add(
            config,
            c,
            "within 1.2x of plain torch",
            r["ratio"] <= 1.2,
            ratio(r),
            r["cpu_ratio"] <= 1.2,
        )
    return out


# --------------------------------------------------------------------------- output
def source_state():
    """The commit measured and whether skocl's sources differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*cmd):
        try:
            return subprocess.run(
                ["git", *cmd], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    def digest(files):
        return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]

    hot = [root / "skocl" / name for name in HOT_PATH]
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "skocl_uncommitted_changes": git("status", "--porcelain", "--", "skocl"),
        "hot_path_files": list(HOT_PATH),
        "hot_path_uncommitted": git("status", "--porcelain", "--", *map(str, hot)),
        "hot_path_sha256_16": digest(hot),
        "skocl_sources_sha256_16": digest(sorted((root / "skocl").glob("*.py"))),
    }


def fmt_us(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def short(name):
    names = {
        FLOOR_CORE: "core floor",
        FLOOR_DEFAULTS: "default floor",
        FLOOR_PREDICT: "forward floor",
    }
    return names.get(name, name)


def markdown(rows, targets):
    lines = [
        "| case | contender | median µs/call | p25–p75 µs | ratio | to | "
        "median per-round ratio | CPU µs/call | CPU-time ratio | calls × rounds |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r["contender"] + (" *(info)*" if r["info_only"] else "")
        lines.append(
            f"| {r['case']} | {name} | {fmt_us(r['median_us'])} | "
            f"{fmt_us(r['p25_us'])}–{fmt_us(r['p75_us'])} | {r['ratio']:.2f} | "
            f"{short(r['compared_with'])} | {r['median_paired_ratio']:.2f} | "
            f"{fmt_us(r['cpu_median_us'])} | {r['cpu_ratio']:.2f} | "
            f"{r['calls_per_round']} × {r['rounds']} |"
        )
    lines += [
        "",
        "| skocl config | case | target | measured | result | on CPU time |",
        "|---|---|---|---|---|---|",
    ]
    for t in targets:
        verdict = "PASS" if t["pass"] else "**FAIL**"
        on_cpu = "PASS" if t["pass_on_cpu_time"] else "FAIL"
        lines.append(
            f"| {t['config']} | {t['case']} | {t['target']} | {t['measured']} | {verdict} "
            f"| {on_cpu} |"
        )
    return "\n".join(lines)


def profile_skocl(models, chunks, rows1, big, calls):
    """cProfile top entries of skocl's hot calls (cumulative, then internal time)."""
    out = {}
    for config in CONFIGS:
        ours = models[f"skocl {config}"]
        for label, fn, args, n in (
            ("partial_fit 32x20", ours.partial_fit, chunks, calls),
            ("partial_fit 100000x20", ours.partial_fit, [big], 3),
            ("predict 1 row", ours.predict, rows1, calls),
        ):
            prof = cProfile.Profile()
            prof.enable()
            for i in range(n):
                fn(*args[i % len(args)])
            prof.disable()
            s = io.StringIO()
            stats = pstats.Stats(prof, stream=s).strip_dirs()
            s.write(f"{n} calls, sorted by cumulative time:\n")
            stats.sort_stats("cumulative").print_stats(25)
            s.write("sorted by internal time:\n")
            stats.sort_stats("tottime").print_stats(15)
            out[f"{config}: {label}"] = s.getvalue()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    parser.add_argument("--profile", action="store_true", help="cProfile skocl's hot calls")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)

    limiter = threadpool_limits(limits=1)  # BLAS of numpy/scipy single-threaded too  # noqa: F841
    warnings.filterwarnings("ignore")
    rounds_small, rounds_big, batch_s = (7, 3, 0.02) if args.quick else (71, 13, 0.05)

    source = source_state()  # the sources imported above (others may edit them meanwhile)
    t_total = time.perf_counter()
    started = datetime.datetime.now().astimezone()
    print(
        f"torch threads: {torch.get_num_threads()} (torch.set_num_threads(1)); "
        f"BLAS threads limited to 1 (threadpoolctl); os.cpu_count()={os.cpu_count()}; "
        f"load average at start {os.getloadavg()}",
        file=sys.stderr,
        flush=True,
    )

    X, y = make_classification(
        n_samples=120_000,
        n_features=N_FEATURES,
        n_informative=10,
        n_classes=N_CLASSES,
        random_state=0,
    )
    X_big, y_big = X[:100_000], y[:100_000]
    X_rest, y_rest = X[100_000:], y[100_000:]
    chunks = [(X_rest[i : i + 32], y_rest[i : i + 32]) for i in range(0, 64 * 32, 32)]
    rows1 = [(X_rest[i : i + 1],) for i in range(64)]
    rows10k = [(X_rest[:10_000],)]

    checks = {
        "core": check_same_update("core", X_rest, y_rest, [32, 32, 1000, 32, 450, 5000]),
        "defaults": check_same_update(
            "defaults",
            X_rest,
            y_rest,
            [32, 32, 1000, 32, 450, 3000, 32, 5000, 200, 2000, 1000, 1000, 32],
            shift_from=10,
        ),
    }
    for config, check in checks.items():
        diffs = ", ".join(f"{d:.1e}" for d in check["max_abs_weight_diff_after_each_call"])
        extra = ""
        if config == "defaults":
            extra = (
                f"; memory equal after each call: {all(check['memory_equal_after_each_call'])}"
                f"; drifts skocl {check['drifts_skocl']} floor {check['drifts_floor']}"
                f"; memory rows after each call {check['memory_rows_after_each_call']}"
            )
        print(
            f"same-update check, {config} (max |w_skocl - w_floor| after each call): "
            f"{diffs}{extra}",
            file=sys.stderr,
            flush=True,
        )
        if not check["same"]:
            print(
                f"WARNING: the {config} floor and skocl no longer end in the same state; "
                "the floor may not be doing skocl's update any more.",
                file=sys.stderr,
            )

    # Fresh models for partial_fit; first call (with classes) is the warm-up.
    models = make_models(chunks)
    rows = []
    pf, resets = partial_fit_contenders(models, small=True)
    pf[NAIVE] = naive_validation(models["skocl core"])
    rows += run_case(
        "partial_fit 32x20", pf, chunks, rounds_small, batch_s, 10_000, FLOOR_CORE,
        info={NAIVE}, resets=resets,
    )  # fmt: skip
    pf, resets = partial_fit_contenders(models, small=False)
    rows += run_case(
        "partial_fit 100000x20", pf, [(X_big, y_big)], rounds_big, 0.0, 1, FLOOR_CORE,
        resets=resets,
    )  # fmt: skip

    # Prediction: every model has been fitted above.
    pr = predict_contenders(models)
    rows += run_case("predict 1 row", pr, rows1, rounds_small, batch_s, 20_000, FLOOR_PREDICT)
    rows += run_case(
        "predict 10000 rows", pr, rows10k, rounds_small, batch_s, 1_000, FLOOR_PREDICT
    )

    targets = evaluate_targets(rows)
    table = markdown(rows, targets)
    print()
    print(
        f"torch.set_num_threads(1): torch threads = {torch.get_num_threads()}; "
        f"BLAS threads = 1; cores = {os.cpu_count()}; "
        f"{'--quick' if args.quick else 'full'} run; {started:%Y-%m-%d %H:%M %Z}"
    )
    print()
    print(table)

    profiles = None
    if args.profile:
        profiles = profile_skocl(
            models, chunks, rows1, (X_big, y_big), 300 if args.quick else 3000
        )
        for label, text in profiles.items():
            print(f"\ncProfile of skocl {label}:\n{text}")

    elapsed = time.perf_counter() - t_total
    print(f"\ntotal time {elapsed:.0f} s; load average at end {os.getloadavg()}", file=sys.stderr)
    if not args.no_json:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "date": started.isoformat(timespec="seconds"),
            "command": "python benchmarks/bench_speed.py"
            + (" --quick" if args.quick else "")
            + (" --profile" if args.profile else ""),
            "quick": args.quick,
            "torch_threads": torch.get_num_threads(),
            "blas_threads": [d.get("num_threads") for d in threadpool_info()],
            "cpu_count": os.cpu_count(),
            "load_average_end": os.getloadavg(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {
                "torch": torch.__version__,
                "numpy": np.__version__,
                "sklearn": sklearn.__version__,
                "skorch": skorch.__version__,
                "river": river.__version__,
                "skocl": getattr(skocl, "__version__", "unknown"),
            },
            "source": source,
            "hot_path_changed_during_run": (
                source_state()["hot_path_sha256_16"] != source["hot_path_sha256_16"]
            ),
            "timing": "median over rounds of the mean time per call; gc off inside a batch",
            "total_seconds": elapsed,
        }
        payload = {
            "meta": meta,
            "same_update_checks": checks,
            "results": rows,
            "targets": targets,
            "profiles": profiles,
        }
        RESULTS.write_text(json.dumps(payload, indent=1))
        print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
