"""The head fine-tuned at several rates (``head_rates``): a trained head is not spoiled
by the online step, a switched concept is still followed, and the copies are part of
the model's state (all-or-nothing calls, growth, save and load)."""

import warnings

import numpy as np
import pytest
import torch
from _util import assert_same_tree
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import skocl
from skocl import OnlineFineTuneClassifier


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def quickstart_curve(X, y, **params):
    """The README quickstart: fit on 500 rows, then 10 partial_fit of 100 rows;
    accuracy on the last 297 rows after fit and after each call."""
    clf = OnlineFineTuneClassifier(random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the fit converges
        clf.fit(X[:500], y[:500])
    curve = [clf.score(X[1500:], y[1500:])]
    for s in range(500, 1500, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
        curve.append(clf.score(X[1500:], y[1500:]))
    return clf, np.array(curve)


def test_a_fitted_model_is_not_made_worse_by_the_online_step(digits):
    X, y = digits
    clf, curve = quickstart_curve(X, y)
    assert np.max(curve[:-1] - curve[1:]) <= 0.01  # 0.003 on this seed
    assert curve[-1] >= curve[0]
    rates = clf.learner_.rates
    assert not rates.off and rates.scored == 10
    # The closed-form candidate ("lda") serves by the end: it has no rate.
    assert rates.current == len(rates.rates) and np.isnan(clf.head_lr_)
    # The single rate, the rule before head_rates: the first call costs 5+ points.
    _, single = quickstart_curve(X, y, head_rates=(1.0,))
    assert single[0] - single[1] > 0.03


def test_the_served_copy_is_the_head_and_every_copy_is_fine_tuned(digits):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    before = [p.detach().clone() for p in clf.module_.head.parameters()]
    clf.partial_fit(X[500:600], y[500:600])
    rates = clf.learner_.rates
    assert rates.weight.shape == (3, *clf.module_.head.weight.shape)
    assert torch.equal(clf.module_.head.weight.detach(), rates.weight[rates.current])
    assert torch.equal(clf.module_.head.bias.detach(), rates.bias[rates.current])
    # Each copy moved from the fitted head, the faster ones further.
    moves = [
        float((rates.weight[k] - before[0]).abs().sum() + (rates.bias[k] - before[1]).abs().sum())
        for k in range(3)
    ]
    assert 0 < moves[2] < moves[1] < moves[0]


def test_a_concept_switch_after_fit_is_followed_at_the_full_rate(digits):
    X, y = digits
    flipped = (y + 1) % 10  # every label moves: the concept switched
    scores = {}
    for rates in [(1.0, 0.1, 0.01), (1.0,)]:
        clf = OnlineFineTuneClassifier(random_state=0, head_rates=rates).fit(X[:500], y[:500])
        for s in range(500, 1500, 100):
            clf.partial_fit(X[s : s + 100], flipped[s : s + 100])
        assert clf.head_lr_ == clf.head_lr
        scores[rates] = clf.score(X[1500:], flipped[1500:])
    assert scores[(1.0, 0.1, 0.01)] > 0.7  # 0.761; head_lr alone: 0.764
    assert scores[(1.0, 0.1, 0.01)] >= scores[(1.0,)] - 0.02


def test_a_head_still_learning_keeps_head_lr_alone(digits):
    X, y = digits
    scratch = OnlineFineTuneClassifier(random_state=0)
    for s in range(0, 300, 100):
        scratch.partial_fit(X[s : s + 100], y[s : s + 100], classes=np.arange(10))
    assert scratch.learner_.rates.off and scratch.learner_.rates.weight is None
    assert scratch.head_lr_ == scratch.head_lr
    with pytest.warns(ConvergenceWarning):
        short = OnlineFineTuneClassifier(max_iter=2, random_state=0).fit(X[:300], y[:300])
    short.partial_fit(X[300:400], y[300:400])
    assert short.learner_.rates.off and short.head_lr_ == short.head_lr


def test_saved_and_loaded_the_copies_resume_exactly(digits, tmp_path):
    """The copies and the closed-form candidate ("lda", which serves here)."""
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    for s in range(500, 800, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    again = skocl.load(skocl.save(clf, tmp_path / "model.skocl"))
    assert again.learner_.rates.lda.weight is not None
    assert_same_tree(clf.learner_.rates.state_dict(), again.learner_.rates.state_dict())
    for s in range(800, 1100, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
        again.partial_fit(X[s : s + 100], y[s : s + 100])
    np.testing.assert_array_equal(clf.predict_proba(X[1500:]), again.predict_proba(X[1500:]))
    np.testing.assert_equal(clf.head_lr_, again.head_lr_)  # nan while "lda" serves


def test_every_copy_grows_with_the_label_set(digits):
    X, y = digits
    old = y < 5
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[old][:400], y[old][:400])
    clf.partial_fit(X[:100], y[:100])  # brings classes 5-9
    rates = clf.learner_.rates
    assert rates.weight.shape == (3, 10, clf.module_.head.in_features)
    assert rates.bias.shape == (3, 10)
    assert all(m.shape[:2] == (3, 10) for m in rates.moments)
    for s in range(100, 1000, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    assert clf.score(X[1500:], y[1500:]) > 0.8


@pytest.mark.parametrize(
    "rates, match",
    [((), r"at least one"), ((1.0, -0.1), r"head_rates\[1\] is -0.1"),
     ((1.0, float("nan")), r"head_rates\[1\] is nan"), (("fast",), r"head_rates\[0\]")],
)  # fmt: skip
def test_bad_head_rates_are_an_error_naming_the_entry_before_any_change(digits, rates, match):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    clf.partial_fit(X[500:600], y[500:600])
    before = clf.learner_.state_dict()
    weights = [p.detach().clone() for p in clf.module_.parameters()]
    clf.set_params(head_rates=rates)
    with pytest.raises(ValueError, match=match):
        clf.partial_fit(X[600:700], y[600:700])
    assert_same_tree(before, clf.learner_.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(weights, clf.module_.parameters()))
    with pytest.raises(ValueError, match=match):
        OnlineFineTuneClassifier(head_rates=rates).fit(X[:100], y[:100])


def test_a_model_saved_before_head_rates_keeps_head_lr_alone(digits, tmp_path):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    clf.partial_fit(X[500:600], y[500:600])
    state = clf.learner_.state_dict()
    del state["rates"]  # as a file of an earlier version holds it
    clf.learner_.rates = type(clf.learner_.rates)()
    clf.learner_.load_state_dict(state)
    clf.partial_fit(X[600:700], y[600:700])
    assert clf.learner_.rates.off and clf.head_lr_ == clf.head_lr


def test_the_head_learns_from_a_sample_of_a_large_chunk(digits, monkeypatch):
    import skocl._learner as learner_module

    X, y = digits
    monkeypatch.setattr(learner_module, "HEAD_ROWS", 64)
    shapes = []
    features = learner_module.head_features
    monkeypatch.setattr(
        learner_module, "head_features", lambda *a: shapes.append(len(a[1])) or features(*a)
    )

    def stream(seed, w=None):
        clf = OnlineFineTuneClassifier(random_state=seed, head_rates=(1.0,))
        for s in range(0, 1400, 200):
            sw = None if w is None else w[s : s + 200]
            clf.partial_fit(X[s : s + 200], y[s : s + 200], np.arange(10), sample_weight=sw)
        return clf

    clf = stream(0)
    assert 64 in shapes and 200 not in shapes  # the head's features: 64 of 200 rows
    assert clf.score(X[1500:], y[1500:]) > 0.8
    again = stream(0)
    np.testing.assert_array_equal(clf.predict_proba(X[1500:]), again.predict_proba(X[1500:]))
    # A sample whose rows all weigh nothing: the head learns from the whole chunk.
    w = np.zeros(len(y))
    w[::199] = 1.0
    for seed in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert stream(seed, w).n_skipped_steps_ == 0


@pytest.mark.parametrize(
    "n_classes, rows", [(2, 1024), (4, 1024), (6, 1536), (10, 2048), (20, 2048)]
)
def test_the_head_budget_is_rows_per_class_within_its_bounds(n_classes, rows, monkeypatch):
    """A chunk of 3,000 rows: the head learns from 256 of its rows a class the head
    predicts, at least 1,024 and at most 2,048 (as many replayed rows join them)."""
    import skocl._learner as learner_module

    assert learner_module.head_budget(n_classes) == rows
    shapes = []
    features = learner_module.head_features
    monkeypatch.setattr(
        learner_module, "head_features", lambda *a: shapes.append(len(a[1])) or features(*a)
    )
    rng = np.random.RandomState(0)
    X, y = rng.randn(3000, 5).astype(np.float32), rng.randint(n_classes, size=3000)
    clf = OnlineFineTuneClassifier(random_state=0, hidden_layer_sizes=(8,))
    clf.partial_fit(X, y, classes=np.arange(n_classes))
    assert shapes == [rows]
    clf.partial_fit(X[:500], y[:500])  # a chunk within the budget is learned whole
    assert shapes == [rows, 500]


@pytest.mark.parametrize(
    "optimizer, weight_decay", [("adam", 0.0), ("adam", 0.05), ("adamw", 0.05)]
)
def test_every_copy_steps_as_torchs_adam_at_its_rate(optimizer, weight_decay):
    """The copies' steps (closed-form gradient, fused kernel, one call per copy) are
    what torch's Adam/AdamW does to an nn.Linear at that rate, copy by copy; the step
    counts carry over from call to call."""
    from torch import nn
    from torch.nn import functional as F

    from skocl._head_rates import HeadRates

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 6, generator=g)
    y = torch.randint(3, (40,), generator=g)
    w = torch.rand(40, generator=g)
    mask = torch.tensor([0.0, 0.0, 0.0, float("-inf")])  # a class not shown yet
    torch.manual_seed(0)
    head = nn.Linear(6, 4)
    rates = HeadRates((1.0, 0.1, 0.01))
    rates.start(head, optimizer, trained=True)
    refs = []
    for r in rates.rates:
        ref = nn.Linear(6, 4)
        ref.load_state_dict(head.state_dict())
        kind = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        refs.append((ref, kind(ref.parameters(), lr=1e-2 * r, weight_decay=weight_decay)))
    for _ in range(2):  # two calls of three steps
        rates.learn(feats, y, w, 3, mask, 1e-2, weight_decay, optimizer == "adamw")
        for ref, opt in refs:
            for _ in range(3):
                opt.zero_grad()
                loss = (F.cross_entropy(ref(feats) + mask, y, reduction="none") * w).sum()
                (loss / w.sum()).backward()
                opt.step()
    for j, (ref, _) in enumerate(refs):
        torch.testing.assert_close(rates.weight[j], ref.weight.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rates.bias[j], ref.bias.detach(), rtol=1e-5, atol=1e-6)
    assert rates.steps.tolist() == [6, 6, 6]
