"""Not forgetting and following drift: replay, anchors, fusion, drift detection."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs
from sklearn.model_selection import train_test_split

import skocl
from skocl import OnlineFineTuneClassifier
from skocl._continual import ReplayMemory
from skocl.datasets import make_drift_stream
from skocl.metrics import average_accuracy, evaluate_tasks, forgetting

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

NAIVE = dict(memory_size=0, drift_detector=None)


# --------------------------------------------------------------------------- memory
def test_class_balanced_memory_gives_each_class_an_equal_share():
    mem = ReplayMemory(60, "class_balanced", 2, torch.float32, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 500 + [1] * 50 + [2] * 20)
    X = torch.randn(len(y), 2)
    for lo in range(0, len(y), 32):
        mem.add(X[lo : lo + 32], y[lo : lo + 32], gen)
    assert len(mem) == 60
    assert torch.bincount(mem.y).tolist() == [20, 20, 20]
    # Rows are kept exactly, with their labels.
    for row, label in zip(mem.X, mem.y):
        match = (X == row).all(1).nonzero().flatten()
        assert len(match) == 1 and y[match[0]] == label


def test_reservoir_memory_is_a_uniform_sample():
    counts = np.zeros(2)
    for seed in range(40):
        mem = ReplayMemory(50, "reservoir", 1, torch.float32, torch.device("cpu"))
        gen = torch.Generator().manual_seed(seed)
        y = torch.tensor([0] * 900 + [1] * 100)  # class 1 arrives last
        X = torch.arange(1000, dtype=torch.float32)[:, None]
        for lo in range(0, 1000, 64):
            mem.add(X[lo : lo + 64], y[lo : lo + 64], gen)
        assert len(mem) == 50 and len(torch.unique(mem.X)) == 50
        counts += torch.bincount(mem.y, minlength=2).numpy()
    share = counts[1] / counts.sum()
    assert 0.06 < share < 0.14  # 10% of the rows seen, whenever they came


def test_memory_is_bounded_and_replayed_in_partial_fit():
    X, y = make_blobs(600, centers=3, n_features=4, random_state=0)
    clf = OnlineFineTuneClassifier(memory_size=90, random_state=0, **{"drift_detector": None})
    for lo in range(0, 600, 50):
        clf.partial_fit(X[lo : lo + 50], y[lo : lo + 50])
    assert len(clf.learner_.memory) == 90
    assert torch.bincount(clf.learner_.memory.y).tolist() == [30, 30, 30]


# --------------------------------------------------------------------------- forgetting
def split_digits(clf, passes=2, n_tasks=3):
    X, y = load_digits(return_X_y=True)
    X = X / 16
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    tasks = [(2 * k, 2 * k + 1) for k in range(n_tasks)]
    held_out = [(Xte[np.isin(yte, t)], yte[np.isin(yte, t)]) for t in tasks]
    rng, rows = np.random.RandomState(0), []
    for k, t in enumerate(tasks):
        m = np.isin(ytr, t)
        for _ in range(passes):
            order = rng.permutation(m.sum())
            for lo in range(0, len(order), 32):
                i = order[lo : lo + 32]
                clf.partial_fit(
                    Xtr[m][i], ytr[m][i], classes=np.arange(10) if k == 0 and lo == 0 else None
                )
        rows.append(evaluate_tasks(clf, held_out))
    return np.vstack(rows)


def test_defaults_remember_earlier_tasks_where_naive_fine_tuning_forgets():
    naive = split_digits(OnlineFineTuneClassifier(random_state=0, **NAIVE))
    default = split_digits(OnlineFineTuneClassifier(random_state=0))
    assert average_accuracy(naive) < 0.5 and forgetting(naive) > 0.5
    assert average_accuracy(default) > 0.85 and forgetting(default) < 0.15


# --------------------------------------------------------------------------- anchors
@pytest.fixture
def pretrained():
    X, y = make_blobs(400, centers=3, n_features=5, random_state=1)
    return X, y


def trunk_distance(clf, start):
    return sum(
        ((p.detach() - s) ** 2).sum().item() for p, s in zip(clf.learner_.trunk_params, start)
    )


@pytest.mark.parametrize("reg", ["l2sp", "ewc"])
def test_anchor_keeps_the_trunk_near_its_pretrained_weights(pretrained, reg):
    X, y = pretrained
    Xn = X + 3.0  # a shifted domain pulls the trunk away
    dist = {}
    for strength in (0.0, 50.0):
        clf = OnlineFineTuneClassifier(
            regularization=reg,
            reg_strength=strength,
            trunk_lr=1e-2,
            max_iter=30,
            random_state=0,
            **NAIVE,
        ).fit(X, y)
        start = [p.detach().clone() for p in clf.learner_.trunk_params]
        if reg == "ewc":
            assert clf.learner_.anchor.fisher is not None
            assert all(
                f.shape == p.shape and (f >= 0).all()
                for f, p in zip(clf.learner_.anchor.fisher, start)
            )
        for lo in range(0, 400, 40):
            clf.partial_fit(Xn[lo : lo + 40], y[lo : lo + 40])
        dist[strength] = trunk_distance(clf, start)
    assert dist[50.0] < 0.3 * dist[0.0]


def test_ewc_set_after_fit_is_a_clear_error(pretrained):
    X, y = pretrained
    clf = OnlineFineTuneClassifier(max_iter=5, random_state=0, **NAIVE).fit(X, y)
    clf.set_params(regularization="ewc")
    with pytest.raises(ValueError, match="Fisher"):
        clf.partial_fit(X[:20], y[:20])


# --------------------------------------------------------------------------- fusion
def test_ema_fusion_serves_the_moving_average(pretrained):
    X, y = pretrained
    clf = OnlineFineTuneClassifier(
        fusion="ema", ema_decay=0.8, max_iter=5, random_state=0, **NAIVE
    )
    clf.fit(X, y)
    served = [p.detach().clone() for p in clf.learner_.trunk_params + clf.learner_.head_params]
    for lo in (0, 40):
        clf.partial_fit(X[lo : lo + 40], y[lo : lo + 40])
        current = [p.detach() for p in clf.learner_.trunk_params + clf.learner_.head_params]
        served = [0.8 * s + 0.2 * c for s, c in zip(served, current)]
    serve = [p for part in clf.learner_.served for p in part.parameters()]
    for s, expected in zip(serve, served):
        torch.testing.assert_close(s.detach(), expected)
    # predictions come from the served weights, not the current ones
    logits = clf.learner_.served[1](
        clf.learner_.served[0](torch.as_tensor(X[:5], dtype=torch.float32))
    )
    np.testing.assert_allclose(
        clf.predict_proba(X[:5]), torch.softmax(logits, 1).detach().numpy(), rtol=1e-5
    )


def test_wise_fusion_interpolates_pretrained_and_current(pretrained):
    X, y = pretrained
    clf = OnlineFineTuneClassifier(
        fusion="wise", wise_alpha=0.25, max_iter=5, random_state=0, **NAIVE
    )
    clf.fit(X, y)
    start = [p.detach().clone() for p in clf.learner_.trunk_params + clf.learner_.head_params]
    clf.partial_fit(X[:40] + 1, y[:40])
    current = [p.detach() for p in clf.learner_.trunk_params + clf.learner_.head_params]
    serve = [p for part in clf.learner_.served for p in part.parameters()]
    for s, p0, p in zip(serve, start, current):
        torch.testing.assert_close(s.detach(), 0.75 * p0 + 0.25 * p)


# --------------------------------------------------------------------------- drift
class FireAt:
    """A detector with river's interface that fires on its n-th update."""

    def __init__(self, at):
        self.at, self.n, self.drift_detected = at, 0, False

    def update(self, x):
        self.n += 1
        self.drift_detected = self.n == self.at

    def clone(self):
        return FireAt(self.at)


def test_drift_is_recorded_and_contradicted_memory_is_dropped():
    X, y, _ = make_drift_stream(600, 4, 3, drift_points=(), random_state=0)
    detector = FireAt(130)
    clf = OnlineFineTuneClassifier(drift_detector=detector, memory_size=60, random_state=0)
    clf.partial_fit(X[:100], y[:100])  # the first call is learned, not watched
    clf.partial_fit(X[100:200], y[100:200])
    assert len(clf.learner_.memory) == 60
    clf.partial_fit(X[200:300], y[200:300])  # the 130th watched row fires
    assert clf.drifts_ == [200 + 30]
    assert detector.n == 0  # the parameter is cloned, never updated
    # Same input distribution: the memory rows of the chunk's classes were dropped,
    # then the chunk itself was offered to the memory.
    assert set(torch.unique(clf.learner_.memory.y).tolist()) <= set(np.unique(y[200:300]))
    assert clf.learner_.memory.seen.sum().item() == 100


def test_drift_on_new_inputs_keeps_the_memory():
    X, y, _ = make_drift_stream(400, 4, 3, drift_points=(), random_state=0)
    clf = OnlineFineTuneClassifier(drift_detector=FireAt(10), memory_size=60, random_state=0)
    clf.partial_fit(X[:200], y[:200])
    before = clf.learner_.memory.X.clone()
    clf.set_params(head_steps=0, trunk_lr=0.0)
    clf.partial_fit(X[200:260] + 8.0, y[200:260])  # a new domain, far from the memory
    assert clf.drifts_ == [200 + 10]
    kept = [(row == clf.learner_.memory.X).all(1).any().item() for row in before]
    assert sum(kept) >= 30  # old rows stay (only the reservoir replaced some)


def test_river_adwin_detects_an_abrupt_drift():
    pytest.importorskip("river")
    X, y, drifts = make_drift_stream(6000, 6, 4, drift_points=(0.5,), severity=1.0, random_state=0)
    clf = OnlineFineTuneClassifier(random_state=0)
    clf.fit(X[:1000], y[:1000])
    for lo in range(1000, 6000, 100):
        clf.partial_fit(X[lo : lo + 100], y[lo : lo + 100])
    assert type(clf.drift_detector_).__name__ == "ADWIN"
    after = [d for d in clf.drifts_ if d > drifts[0]]
    assert after and after[0] - drifts[0] < 1000


def test_fusion_and_memory_survive_save_and_load(tmp_path):
    X, y = make_blobs(300, centers=3, n_features=4, random_state=0)
    clf = OnlineFineTuneClassifier(fusion="ema", regularization="l2sp", max_iter=5, random_state=0)
    clf.fit(X[:100], y[:100])
    clf.partial_fit(X[100:200], y[100:200])
    back = skocl.load(skocl.save(clf, tmp_path / "m.skocl"))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    for model in (clf, back):
        model.partial_fit(X[200:], y[200:])
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert torch.equal(back.learner_.memory.X, clf.learner_.memory.X)


def test_growth_keeps_pretrained_rows_and_to_skorch_serves_fused_weights():
    X, y = make_blobs(300, centers=3, n_features=4, random_state=0)
    clf = OnlineFineTuneClassifier(fusion="wise", max_iter=5, random_state=0, **NAIVE)
    clf.fit(X[y < 2], y[y < 2])
    head_start = [t.clone() for t in clf.learner_.anchor.head]
    clf.partial_fit(X, y)  # class 2 arrives
    W0, b0 = clf.learner_.anchor.head
    assert W0.shape[0] == 3
    assert torch.equal(W0[:2], head_start[0]) and torch.equal(b0[:2], head_start[1])
    net = clf.to_skorch()
    np.testing.assert_allclose(
        net.predict_proba(X.astype(np.float32)), clf.predict_proba(X), rtol=1e-5, atol=1e-6
    )


def test_fit_seeds_the_replay_memory_with_its_rows():
    X, y = make_blobs(300, centers=3, n_features=4, random_state=0)
    clf = OnlineFineTuneClassifier(memory_size=60, max_iter=3, random_state=0).fit(X, y)
    assert torch.bincount(clf.learner_.memory.y).tolist() == [20, 20, 20]
    rows = torch.as_tensor(X, dtype=torch.float32)
    assert all((rows == r).all(1).any() for r in clf.learner_.memory.X)
