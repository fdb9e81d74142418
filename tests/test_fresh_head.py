"""A fresh head after a drift that switches the concept (``fresh_head``): it learns the
new concept faster than the head unlearns the old one, it is started only when the
concept changed (not for new classes, not on a stationary stream), and it is part of
the model's state (all-or-nothing calls, growth, save and load)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _util import assert_same_tree
from sklearn.datasets import load_digits, make_classification
from sklearn.utils._param_validation import InvalidParameterError

import skocl
from skocl import OnlineFineTuneClassifier
from skocl._continual import ReplayMemory
from skocl.datasets import make_drift_stream

SWITCH = 3000


@pytest.fixture(scope="module")
def switched():
    """Three classes; from row 3,000 every label moves to the next class."""
    X, y = make_classification(
        6000, 10, n_informative=6, n_classes=3, n_clusters_per_class=1, random_state=0
    )
    return X, np.where(np.arange(len(y)) >= SWITCH, (y + 1) % 3, y)


def prequential(clf, X, y, stop=None, chunk=100, classes=(0, 1, 2), each=None):
    """Test-then-train in chunks; per-chunk accuracy (the first chunk only learned)."""
    clf.partial_fit(X[:chunk], y[:chunk], classes=classes)
    acc = []
    for s in range(chunk, stop or len(y), chunk):
        acc.append(np.mean(clf.predict(X[s : s + chunk]) == y[s : s + chunk]))
        clf.partial_fit(X[s : s + chunk], y[s : s + chunk])
        if each is not None:
            each(clf)
    return np.array(acc)


def test_a_switched_concept_is_learned_by_a_fresh_head(switched):
    X, y = switched
    after = slice(SWITCH // 100 - 1, SWITCH // 100 + 9)  # the 1,000 rows after the switch
    on = OnlineFineTuneClassifier(random_state=0)
    acc_on = prequential(on, X, y)
    off = OnlineFineTuneClassifier(random_state=0, fresh_head=False)
    acc_off = prequential(off, X, y)
    assert on.fresh_heads_ >= 1 and off.fresh_heads_ == 0
    assert not on.learner_.fresh.active  # it became the head
    # Before the switch the two are the same model; after it, the fresh head leads.
    np.testing.assert_array_equal(acc_on[: after.start], acc_off[: after.start])
    # 0.699 against 0.656; 0.701 against 0.640 before logit replay, which helped the
    # model without a fresh head; 0.556 before the head's candidates started at a
    # concept change, which helped both.
    assert acc_on[after].mean() > acc_off[after].mean() + 0.03
    assert acc_on[-10:].mean() > 0.85  # 0.888


def test_sparse_rows_get_a_fresh_head_too(switched):
    X, y = switched
    Xs = sp.csr_matrix(np.where(np.abs(X) > 0.5, X, 0.0))
    after = slice(SWITCH // 100 - 1, SWITCH // 100 + 9)
    on = OnlineFineTuneClassifier(random_state=0)
    acc_on = prequential(on, Xs, y)
    off = OnlineFineTuneClassifier(random_state=0, fresh_head=False)
    acc_off = prequential(off, Xs, y)
    assert on.learner_.sparse and on.fresh_heads_ >= 1
    assert acc_on[after].mean() > acc_off[after].mean() + 0.05  # 0.698 against 0.621


def test_a_stationary_stream_starts_no_fresh_head():
    X, y, _ = make_drift_stream(20000, 20, 4, drift_points=(), random_state=0)
    active = []
    clf = OnlineFineTuneClassifier(random_state=0)
    prequential(clf, X, y, chunk=500, classes=np.arange(4),
                each=lambda c: active.append(c.learner_.fresh.active))  # fmt: skip
    assert not any(active) and clf.fresh_heads_ == 0


def test_new_classes_start_no_fresh_head():
    """Class-incremental digits: the error jumps when classes 5-9 arrive and the
    detector reacts, but their inputs are new, so the head (and its old classes) stay."""
    X, y = load_digits(return_X_y=True)
    order = np.argsort(y >= 5, kind="stable")
    X, y = X[order] / 16.0, y[order]
    active = []
    clf = OnlineFineTuneClassifier(random_state=0)
    prequential(clf, X, y, chunk=50, classes=np.arange(10),
                each=lambda c: active.append(c.learner_.fresh.active))  # fmt: skip
    assert clf.drifts_  # the detector fired
    assert not any(active) and clf.fresh_heads_ == 0


def test_fresh_head_false_or_an_sgd_head_never_starts_one(switched):
    X, y = switched
    for params in ({"fresh_head": False}, {"optimizer": "sgd"}):
        clf = OnlineFineTuneClassifier(random_state=0, **params)
        active = []
        prequential(clf, X, y, each=lambda c, seen=active: seen.append(c.learner_.fresh.active))
        assert clf.drifts_ and not any(active) and clf.fresh_heads_ == 0


def until_learning(X, y, **params):
    """A model fed the switched stream until a fresh head is learning, and the row
    reached."""
    clf = OnlineFineTuneClassifier(random_state=0, **params)
    clf.partial_fit(X[:100], y[:100], classes=np.arange(3))
    for s in range(100, len(y), 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
        if clf.learner_.fresh.active:
            return clf, s + 100
    raise AssertionError("no fresh head started")


def test_saved_while_learning_the_fresh_head_resumes_exactly(switched, tmp_path):
    X, y = switched
    clf, s = until_learning(X, y)
    again = skocl.load(skocl.save(clf, tmp_path / "model.skocl"))
    assert again.learner_.fresh.active
    assert_same_tree(clf.learner_.fresh.state_dict(), again.learner_.fresh.state_dict())
    for start in range(s, s + 1000, 100):
        clf.partial_fit(X[start : start + 100], y[start : start + 100])
        again.partial_fit(X[start : start + 100], y[start : start + 100])
    assert clf.fresh_heads_ == again.fresh_heads_ == 1
    np.testing.assert_array_equal(clf.predict_proba(X), again.predict_proba(X))


def test_a_failed_call_puts_the_fresh_head_back(switched, monkeypatch):
    X, y = switched
    clf, s = until_learning(X, y)
    before = clf.learner_.fresh.state_dict()
    weights = [p.detach().clone() for p in clf.module_.parameters()]

    def broken(*args, **kwargs):
        raise RuntimeError("the memory broke")

    # The failure comes after the take-over and the fine-tunes of this call.
    monkeypatch.setattr(type(clf.learner_.memory), "offer", broken)
    with pytest.raises(RuntimeError, match="the memory broke"):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    assert clf.fresh_heads_ == 0
    assert_same_tree(before, clf.learner_.fresh.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(weights, clf.module_.parameters()))


def test_the_fresh_head_grows_with_the_label_set(switched):
    X, y = switched
    clf = OnlineFineTuneClassifier(random_state=0)
    clf.partial_fit(X[:100], y[:100])  # the label set grows: no classes given
    for s in range(100, len(y), 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
        if clf.learner_.fresh.active:
            break
    fresh = clf.learner_.fresh
    old = fresh.weight.clone()
    clf.partial_fit(X[s + 100 : s + 200], np.full(100, 7))  # a fourth class
    if fresh.active:  # unless it took over on this chunk
        assert fresh.weight.shape == (1, 4, clf.module_.head.in_features)
        assert fresh.bias.shape == (1, 4) and all(m.shape[1] == 4 for m in fresh.moments)
        assert old.shape[1] == 3
    assert clf.module_.head.out_features == 4


def test_a_bad_fresh_head_is_an_error_naming_it(switched):
    X, y = switched
    with pytest.raises(InvalidParameterError, match="fresh_head"):
        OnlineFineTuneClassifier(fresh_head="yes").partial_fit(X[:100], y[:100])


def balanced_categorical(rule, n, rng):
    """Rows of three categorical features in {0, 1, 2} labelled by ``rule``, the classes
    taking turns (as river's STAGGER with ``balance_classes``): the inputs' distribution
    moves with the rule."""
    rows, labels, want = [], [], 0
    while len(rows) < n:
        x = rng.integers(0, 3, size=3)
        if int(rule(x)) == want:
            rows.append(x)
            labels.append(want)
            want = 1 - want
    return np.array(rows, dtype=float), np.array(labels)


def rule_b(x):
    return (x[..., 1] == 2) | (x[..., 2] == 1)


def test_a_new_rule_over_moved_inputs_is_a_concept_change(monkeypatch):
    """The inputs' means move with the rule, so only the nearest-neighbour test finds
    that the chunk contradicts the memory: its rows go and a fresh head takes over."""
    rng = np.random.default_rng(0)
    XA, yA = balanced_categorical(lambda x: x[0] == 0 and x[1] == 0, 3000, rng)
    XB, yB = balanced_categorical(rule_b, 3000, rng)
    X, y = np.vstack([XA, XB]), np.concatenate([yA, yB])
    assert np.abs(XA.mean(0) - XB.mean(0)).max() > 0.3  # the test of the means fails

    def run():
        clf = OnlineFineTuneClassifier(random_state=0)
        acc = prequential(clf, X, y, classes=(0, 1))
        memory = clf.learner_.memory
        wrong = np.mean(rule_b(memory.X.numpy()) != memory.y.numpy().astype(bool))
        return clf, acc[29:49].mean(), wrong

    clf, acc, wrong = run()
    with monkeypatch.context() as m:
        m.setattr(ReplayMemory, "_contradicted", lambda self, X, y: False)
        clf_means, acc_means, wrong_means = run()
    assert clf.fresh_heads_ >= 1 and clf_means.fresh_heads_ == 0
    assert wrong < 0.01 < 0.1 < wrong_means  # the old rule's rows were dropped
    assert acc > acc_means + 0.1  # 0.801 against 0.606 over the 2,000 rows after
