"""Watching for drift: the detector, the error level that gates a reaction, the drifts."""

from __future__ import annotations

import copy
import copyreg
import math
import warnings
import weakref

import numpy as np
import torch

from .exceptions import DriftDetectionUnavailableWarning

# Weight of the newest chunk's error rate in the running error level.
LEVEL_WEIGHT = 0.2
# A detection calls for a reaction when the chunk's error rate exceeds the level by more
# than this many binomial standard errors of the rate, sqrt(level (1 - level) / n): a
# chunk a little worse than usual, as a stationary stream gives now and then, does not
# evict replay rows. Chosen by benchmarks/bench_defaults.py (issue 10, target 3a): 0.5
# took the stationary streams' reactions to 0 at 50,000 rows (10 seeds) and 200,000
# rows (3 seeds) with every other measured number unchanged (1,000,000 rows kept 0.3
# reactions a stream, then 0.7 by 2026-12-06 17:00: REACTION_REL); 1 and 2 slowed the
# reaction to the abrupt drift of bench_continual.py. 0.25 (2026-12-06 17:00) brought
# the gradual drift stream of bench_continual.py from 0.701 to 0.710 but reacted 1.0
# and 0.7 times on the 1,000,000-row streams (DEFAULTS.md, "A floor on the reaction
# margin").
REACTION_Z = 0.5
# ... and by more than this share of the level: on a long stationary stream in large
# chunks the standard error is small (0.6 points for 1,000 rows at 20 % error) and some
# detection, among the several a million rows bring, lands on a chunk that much above
# the level. Chosen by benchmarks/sweep_reaction.py (issue 10, target 3a; DEFAULTS.md,
# "A floor on the reaction margin"): make_drift_stream's stationary stream of 1,000,000
# rows reacted 0.7 times a stream (3 seeds) with no floor, 0 with 0.1; every number of
# the standard run and of the 20,000-row river protocol stayed the same to the third
# decimal, the gradual drift stream of bench_continual.py read 0.698 against 0.701.
REACTION_REL = 0.1
# Most rows of a chunk that are predicted before it is learned, for the drift monitor and
# the scores of the head's copies: a larger chunk is watched through a uniform sample of
# this many rows (in stream order). Predicting a 10,000-row chunk and feeding river's
# detector one row at a time took 8.6 of a call's 34 ms. With the sample (and replay
# capped at the memory's size a call), bench_head_budget.py's five streams of
# 10,000-row chunks read 0.7340 against 0.7337 (2 seeds; DEFAULTS.md, "Cheaper steps").
# Streams of chunks up to 1,024 rows are watched whole. 1,024 rather than 2,048 (issue
# 10's target 2a): the same accuracy on those five streams (0.7423 against 0.7424, 6
# seeds) for 0.7 ms less of a 21 ms call; an error rate estimated from 1,024 rows has a
# standard error of 1.6 points at most (DEFAULTS.md, "Large chunks, leaner").
WATCH_ROWS = 1024
# Errors kept for a restored detector: a saved monitor's size and the time to load it
# do not grow with the rows seen.
HISTORY = 8192


class DriftMonitor:
    """Feeds the prequential error (each row predicted before it is learned) to a drift
    detector with river's interface, and decides when to react.

    Detectors such as ADWIN also fire when the error falls (the model got better): a
    detection calls for a reaction only when the chunk's error rate rises above its
    recent level, an exponential average of past chunks' rates with weight
    ``LEVEL_WEIGHT`` on the newest, by more than ``REACTION_Z`` standard errors of the
    chunk's rate and by more than ``REACTION_REL`` times the level (so that a chunk a
    little worse than usual on a stationary stream does not count as a rise).

    Attributes
    ----------
    detector : object or None
        The detector (None: no detection).
    drifts : list of int
        Rows seen (``n_samples_seen_``) at each detection.
    level : float or None
        The recent error level.
    recent : ndarray of bool
        The last ``HISTORY`` errors, replayed into the detector when a model is loaded.
    """

    def __init__(self, detector) -> None:
        self.detector = detector
        self.drifts: list[int] = []
        self.level: float | None = None
        self.recent = np.zeros(0, dtype=bool)

    def observe(self, errors: np.ndarray, seen: int, positions=None) -> bool:
        """Feed the errors of one chunk (of the rows at ``positions`` of it, when not
        all); return whether to react to a drift."""
        self.recent = np.concatenate([self.recent, errors])[-HISTORY:]
        drifted = False
        detector = self.detector
        update = detector.update  # one row a call (river's detectors): a lean loop
        for i, wrong in enumerate(errors.astype(np.int64).tolist()):
            update(wrong)
            if detector.drift_detected:
                self.drifts.append(seen + (i if positions is None else int(positions[i])) + 1)
                drifted = True
        rate = float(np.count_nonzero(errors) / len(errors))  # errors.mean(), 20 us less
        level = self.level
        self.level = rate if level is None else (1 - LEVEL_WEIGHT) * level + LEVEL_WEIGHT * rate
        if level is None:
            return drifted
        noise = REACTION_Z * math.sqrt(level * (1 - level) / len(errors))
        margin = max(noise, REACTION_REL * level)
        return drifted and rate > level + margin

    def snapshot(self) -> DriftMonitor:
        """A copy that later observations of this monitor leave alone (a checkpoint's;
        ``recent`` and ``level`` are replaced, not changed, so they are shared)."""
        other = copy.copy(self)
        other.detector = _deep_copy(self.detector)
        other.drifts = list(self.drifts)
        return other

    def grow(self, growth) -> None:
        """Errors do not depend on the label set."""

    def state_dict(self) -> dict:
        return {
            "recent": torch.from_numpy(np.packbits(self.recent)),
            "n_recent": len(self.recent),
            "drifts": list(self.drifts),
            "level": self.level,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the drifts and the level; the detector (fresh) is fed the last
        ``HISTORY`` errors, so it resumes from a shorter history than it had."""
        bits = state["recent"].numpy()
        n_recent = int(state["n_recent"])
        if not 0 <= n_recent <= min(HISTORY, 8 * bits.size):
            raise ValueError(
                f"the drift monitor holds {bits.size} bytes of recent errors but claims "
                f"{n_recent} (at most {min(HISTORY, 8 * bits.size)})"
            )
        self.recent = np.unpackbits(bits, count=n_recent).astype(bool)
        if self.detector is not None:
            for wrong in self.recent.tolist():
                self.detector.update(int(wrong))
        self.drifts = [int(d) for d in state["drifts"]]
        self.level = None if state["level"] is None else float(state["level"])


def make_detector(spec):
    """A fresh drift detector for a (re)start; ``"auto"`` is river's ADWIN when river
    is installed and no detector otherwise."""
    if spec is None:
        return None
    if isinstance(spec, str):  # "auto"
        try:
            from river.drift import ADWIN
        except ImportError:
            warnings.warn(
                "drift_detector='auto' uses river's ADWIN, but river is not installed: "
                "no drift detection, so the replay memory will not follow drift. "
                "pip install 'skocl[drift]', or set drift_detector=None to silence this.",
                DriftDetectionUnavailableWarning,
                stacklevel=5,
            )
            return None
        return ADWIN()
    return spec.clone() if hasattr(spec, "clone") else copy.deepcopy(spec)


def _deep_copy(obj):
    """``copy.deepcopy(obj)``, quicker for an object of a plain class (its state its
    ``__dict__``, no copy or pickle hooks), as river's detectors are: the attributes of
    immutable types are shared rather than passed through ``deepcopy`` one by one, and
    the others deep-copied as ``deepcopy`` would (7 against 11 us for ADWIN, the
    default detector; a checkpoint makes one per call)."""
    cls = type(obj)
    if not _plain_class(cls):
        return copy.deepcopy(obj)
    new = cls.__new__(cls)
    memo = {id(obj): new}
    new.__dict__.update(
        {k: v if type(v) in _ATOMIC else copy.deepcopy(v, memo) for k, v in vars(obj).items()}
    )
    return new


def _plain_class(cls) -> bool:
    """Whether ``deepcopy`` copies instances of ``cls`` as ``cls.__new__(cls)`` with a
    deep copy of their ``__dict__`` (per class, kept)."""
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = _PLAIN[cls] = (
            getattr(cls, "__deepcopy__", None) is None
            and cls.__reduce_ex__ is object.__reduce_ex__
            and cls.__reduce__ is object.__reduce__
            and getattr(cls, "__getstate__", object.__getstate__) is object.__getstate__
            and not hasattr(cls, "__setstate__")
            and not hasattr(cls, "__slots__")
            and cls not in copyreg.dispatch_table
            and cls.__dictoffset__ != 0  # its instances have a __dict__
        )
    return plain


# Types whose values deepcopy returns as they are.
_ATOMIC = frozenset({type(None), bool, int, float, complex, str, bytes})
_PLAIN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watched(rows, rng):
    """The rows of a chunk that are predicted before it is learned, and their positions
    in it: all of them (positions None), or of a chunk of more than ``WATCH_ROWS``, a
    uniform sample of that many, in stream order, drawn from the random stream ``rng``
    (:class:`~skocl._random.Rng`)."""
    if len(rows) <= WATCH_ROWS:
        return rows, None
    with rng.generator() as gen:
        positions = torch.randperm(len(rows), generator=gen)[:WATCH_ROWS].sort().values
    return rows.subset(positions), positions.numpy()
