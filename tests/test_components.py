"""The learner's components tested directly: drift monitor, fusion, anchor, replay rule."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import skocl
from skocl import OnlineFineTuneClassifier
from skocl._continual import Anchor, ReplayMemory, head_replay
from skocl._drift import HISTORY, LEVEL_WEIGHT, REACTION_REL, REACTION_Z, DriftMonitor
from skocl._fusion import EMAFusion, NoFusion, WiSEFusion, make_fusion
from skocl.datasets import make_drift_stream

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class FireOn:
    """A detector with river's interface that fires on the given update counts."""

    def __init__(self, *at):
        self.at, self.n, self.drift_detected = set(at), 0, False

    def update(self, x):
        self.n += 1
        self.drift_detected = self.n in self.at


# --------------------------------------------------------------------------- drift
def test_monitor_reacts_only_when_the_error_rises_above_its_level():
    monitor = DriftMonitor(FireOn(15, 25))
    assert monitor.observe(np.zeros(10, bool), seen=0) is False  # no detection
    assert monitor.level == 0.0
    # A detection while the error (0.1) is below its level (0.5) is recorded, not acted on.
    monitor.level = 0.5
    errors = np.zeros(10, bool)
    errors[0] = True
    assert monitor.observe(errors, seen=10) is False
    assert monitor.drifts == [15]
    assert monitor.level == pytest.approx((1 - LEVEL_WEIGHT) * 0.5 + LEVEL_WEIGHT * 0.1)
    # A detection while the error rises above the level is acted on.
    assert monitor.observe(np.ones(10, bool), seen=20) is True
    assert monitor.drifts == [15, 25]


def test_a_rise_within_the_noise_of_a_chunk_is_no_reaction():
    # 50 rows: the chunk's standard error sets the margin.
    n, level = 50, 0.2
    margin = REACTION_Z * np.sqrt(level * (1 - level) / n)
    assert margin > REACTION_REL * level
    for rate, reacts in ((level + 0.5 * margin, False), (level + 2 * margin, True)):
        monitor = DriftMonitor(FireOn(n))
        monitor.level = level
        errors = np.arange(n) < round(rate * n)
        assert monitor.observe(errors, seen=0) is reacts
        assert monitor.drifts == [n]  # the detection is recorded either way


def test_a_rise_of_a_small_share_of_the_level_is_no_reaction():
    # 10,000 rows: a rise beyond the noise but under REACTION_REL of the level is not
    # acted on (a long stationary stream brings such detections), a larger one is.
    n, level = 10_000, 0.2
    noise = REACTION_Z * np.sqrt(level * (1 - level) / n)
    floor = REACTION_REL * level
    assert 4 * noise < floor
    for rate, reacts in ((level + 4 * noise, False), (level + 1.5 * floor, True)):
        monitor = DriftMonitor(FireOn(n))
        monitor.level = level
        errors = np.arange(n) < round(rate * n)
        assert monitor.observe(errors, seen=0) is reacts
        assert monitor.drifts == [n]


def test_monitor_state_is_bounded_and_restores_the_recent_errors():
    monitor = DriftMonitor(FireOn())
    rng = np.random.RandomState(0)
    for _ in range(30):
        monitor.observe(rng.rand(1000) < 0.3, seen=0)
    state = monitor.state_dict()
    assert state["n_recent"] == HISTORY
    assert state["recent"].numel() == HISTORY // 8  # bits, whatever the rows seen
    back = DriftMonitor(FireOn())
    back.load_state_dict(state)
    np.testing.assert_array_equal(back.recent, monitor.recent)
    assert back.detector.n == HISTORY  # the restored detector was fed the recent errors
    assert back.level == monitor.level and back.drifts == monitor.drifts


class Slotted:
    __slots__ = ("n",)

    def __init__(self):
        self.n = [0]


class OwnCopy(FireOn):
    def __deepcopy__(self, memo):
        return "its own copy"


def test_a_snapshot_copies_the_detector_as_deepcopy_does():
    """DriftMonitor.snapshot copies a plain detector by its attributes (immutable ones
    shared): the copy is independent, keeps aliasing and cycles as deepcopy does, and
    a detector with copy hooks or slots is left to deepcopy."""
    from river.drift import ADWIN

    detector = FireOn(3)
    detector.shared = [1, 2]
    detector.again, detector.me, detector.name = detector.shared, detector, "x"
    copied = DriftMonitor(detector).snapshot().detector
    assert type(copied) is FireOn and copied is not detector
    assert copied.shared == [1, 2] and copied.shared is not detector.shared
    assert copied.again is copied.shared and copied.me is copied
    assert copied.at == {3} and copied.at is not detector.at
    copied.update(0)
    assert (copied.n, detector.n) == (1, 0)
    assert DriftMonitor(OwnCopy()).snapshot().detector == "its own copy"
    slotted = DriftMonitor(Slotted()).snapshot().detector
    assert slotted.n == [0] and slotted.n is not Slotted().n
    # river's ADWIN (the default): the copy goes on as the original would.
    adwin = ADWIN()
    for i in range(3000):
        adwin.update(int(i % 7 == 0))
    twin = DriftMonitor(adwin).snapshot().detector
    for x in [1] * 600 + [0] * 50:
        adwin.update(x)
        twin.update(x)
        assert twin.drift_detected == adwin.drift_detected
    assert twin.width == adwin.width and twin.estimation == adwin.estimation


def test_a_model_saved_mid_stream_still_detects_the_demo_drifts(tmp_path):
    # The demo's stream: abrupt drifts at rows 4800 and 8400; save after the first.
    X, y, drifts = make_drift_stream(12_000, 6, 4, drift_points=(0.4, 0.7), random_state=0)
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:2000], y[:2000])
    for s in range(2000, 6000, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    assert any(4800 <= d <= 5800 for d in clf.drifts_)
    path = skocl.save(clf, tmp_path / "mid.skocl")
    loaded = skocl.load(path)
    assert loaded.drifts_ == clf.drifts_
    for s in range(6000, 12_000, 100):
        loaded.partial_fit(X[s : s + 100], y[s : s + 100])
    assert any(drifts[1] <= d <= drifts[1] + 1000 for d in loaded.drifts_)


# --------------------------------------------------------------------------- fusion
def _pair(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 4), nn.Linear(4, 2)


def _params(trunk, head):
    return list(trunk.parameters()) + list(head.parameters())


def test_ema_fusion_starts_at_the_weights_averages_and_restarts():
    trunk, head = _pair()
    fusion = EMAFusion(0.75)
    assert fusion.served(trunk, head) == (trunk, head)  # live until the first update
    fusion.after_update(trunk, head, _params(trunk, head), None)
    start = [p.detach().clone() for p in _params(*fusion.copy)]
    with torch.no_grad():
        for p in _params(trunk, head):
            p.add_(1.0)
    fusion.after_update(trunk, head, _params(trunk, head), None)
    for s0, s, p in zip(start, _params(*fusion.copy), _params(trunk, head)):
        torch.testing.assert_close(s, 0.75 * s0 + 0.25 * p.detach())
    fusion.restart()
    assert fusion.served(trunk, head) == (trunk, head)


def test_wise_fusion_interpolates_from_the_anchor_and_no_fusion_serves_live():
    trunk, head = _pair()
    anchor = Anchor.capture(list(trunk.parameters()), list(head.parameters()))
    with torch.no_grad():
        for p in _params(trunk, head):
            p.mul_(3.0)
    wise = WiSEFusion(0.25)
    wise.after_update(trunk, head, _params(trunk, head), anchor)
    for s, p0, p in zip(_params(*wise.copy), anchor.trunk + anchor.head, _params(trunk, head)):
        torch.testing.assert_close(s, 0.75 * p0 + 0.25 * p.detach())
    wise.restart()  # WiSE-FT does not restart on drift
    assert wise.copy is not None
    plain = make_fusion(None, 0.9, 0.5, previous=wise)
    assert isinstance(plain, NoFusion)
    plain.after_update(trunk, head, _params(trunk, head), anchor)
    assert plain.served(trunk, head) == (trunk, head)


def test_served_module_is_the_fused_copy_and_predicts():
    X, y, _ = make_drift_stream(600, 5, 3, random_state=1)
    clf = OnlineFineTuneClassifier(fusion="ema", max_iter=5, random_state=0).fit(X[:300], y[:300])
    clf.partial_fit(X[300:400], y[300:400])
    served = clf.served_module_
    assert served.trunk is not clf.module_.trunk  # a fused copy
    with torch.no_grad():
        proba = torch.softmax(served(torch.as_tensor(X[400:], dtype=torch.float32)), 1)
    np.testing.assert_allclose(proba.numpy(), clf.predict_proba(X[400:]), rtol=1e-6, atol=1e-7)
    plain = OnlineFineTuneClassifier(max_iter=5, random_state=0).fit(X[:300], y[:300])
    assert plain.served_module_.trunk is plain.module_.trunk


# --------------------------------------------------------------------------- anchor
def test_anchor_penalty_pulls_toward_the_start_l2sp_ignores_the_fisher():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    anchor = Anchor([torch.zeros(2)], [], fisher=[torch.tensor([0.0, 4.0])])
    grads = [torch.zeros(2)]
    assert anchor.penalty(None, 1.0) is None and anchor.penalty("l2sp", 0.0) is None
    torch.testing.assert_close(
        anchor.penalty("l2sp", 0.5)([w], grads)[0], torch.tensor([0.5, 1.0])
    )
    torch.testing.assert_close(anchor.penalty("ewc", 0.5)([w], grads)[0], torch.tensor([0.0, 4.0]))


# --------------------------------------------------------------------------- replay
def test_the_replay_rule_weighs_replayed_rows_as_documented():
    mem = ReplayMemory(50, "reservoir", 2, torch.float32, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    mem.add(torch.randn(50, 2), torch.arange(50) % 2, gen)
    X, y, w = torch.randn(8, 2), torch.zeros(8, dtype=torch.long), torch.arange(1.0, 9.0)
    Xb, yb, wb = mem.join_batch(X, y, w, mem.replays([8], gen)[0])
    assert len(Xb) == len(yb) == len(wb) == 16
    torch.testing.assert_close(wb[8:], torch.full((8,), float(w.mean())))  # each: the mean
    Xm, yf, wf = head_replay(mem, y, w, gen)
    assert len(Xm) == 8 and len(yf) == len(wf) == 16
    torch.testing.assert_close(wf[8:].sum(), w.sum())  # together: as much as the chunk
    # Unweighted rows: as many replayed all weigh one (None); fewer weigh more each.
    Xm, yf, wf = head_replay(mem, y, None, gen)
    assert len(Xm) == 8 and len(yf) == 16 and wf is None
    Xm, yf, wf = head_replay(mem, torch.zeros(80, dtype=torch.long), None, gen)
    assert len(Xm) == 50 and len(yf) == len(wf) == 130
    torch.testing.assert_close(wf, torch.cat([torch.ones(80), torch.full((50,), 80 / 50)]))
    small = copy.deepcopy(mem)
    small.drop_classes([0, 1])
    assert len(small) == 0


def _offer_one_class_at_a_time(memory, X, y, gen):
    """The class-balanced offer as it was written first: Algorithm R class by class."""
    n_classes = int(y.max()) + 1
    if n_classes > len(memory.seen):
        memory.seen = torch.cat(
            [memory.seen, torch.zeros(n_classes - len(memory.seen), dtype=torch.long)]
        )
    present = torch.unique(y)
    active = int(((memory.seen > 0) | torch.isin(torch.arange(len(memory.seen)), present)).sum())
    quota = max(memory.capacity // max(active, 1), 1)
    memory._shrink_to(quota, gen)
    for c in present.tolist():
        mask = y == c
        memory._reservoir(X[mask], y[mask], memory.y == c, quota, gen, seen=int(memory.seen[c]))
        memory.seen[c] += int(mask.sum())


@pytest.mark.parametrize("capacity", [7, 30, 200])
@pytest.mark.parametrize("by_row", [True, False], ids=["small chunks by row", "arrays only"])
def test_the_one_pass_class_balanced_offer_keeps_what_class_by_class_kept(
    capacity, by_row, monkeypatch
):
    # Chunks of up to SMALL_OFFER rows reach a full memory a row at a time (or, with
    # by_row False, through the arrays as larger ones do): the same rows either way.
    import skocl._continual

    if not by_row:
        monkeypatch.setattr(skocl._continual, "SMALL_OFFER", 0)
    rng = np.random.RandomState(capacity)
    fast = ReplayMemory(capacity, "class_balanced", 3, torch.float32, torch.device("cpu"))
    slow = copy.deepcopy(fast)
    g_fast, g_slow = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for step in range(40):
        # Chunks of 1 to 150 rows over a growing set of up to 6 classes, some missing.
        n = rng.randint(1, 151)
        y = torch.as_tensor(rng.randint(0, min(2 + step // 5, 6), n))
        X = torch.as_tensor(rng.randn(n, 3), dtype=torch.float32)
        fast.add(X, y, g_fast)
        _offer_one_class_at_a_time(slow, X, y, g_slow)
        assert torch.equal(fast.X, slow.X) and torch.equal(fast.y, slow.y), step
        assert torch.equal(fast.seen, slow.seen), step
        assert len(fast) <= capacity
    assert torch.equal(g_fast.get_state(), g_slow.get_state())  # the same draws
