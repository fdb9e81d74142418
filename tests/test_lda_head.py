"""The head's closed-form candidate (``"lda"`` in ``head_rates``): streaming linear
discriminant analysis of the trunk's features, equal to the batch closed form, served
only while it predicts better, and part of the model's state."""

import numpy as np
import pytest
import torch
from _util import assert_same_tree
from sklearn.datasets import load_digits
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from skocl import OnlineFineTuneClassifier
from skocl._lda_head import SHRINKAGE, StreamingLDA


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_chunk_by_chunk_it_is_the_batch_closed_form():
    """Balanced classes, every row in the covariance: the weights are sklearn's shrunk
    LDA's with equal priors, up to the scale of the covariance's denominator."""
    rng = np.random.RandomState(0)
    n_per, width, n_classes = 60, 8, 3
    means = rng.normal(scale=2.0, size=(n_classes, width))
    y = np.repeat(np.arange(n_classes), n_per)
    X = means[y] + rng.normal(size=(len(y), width)) @ rng.normal(size=(width, width))
    order = rng.permutation(len(y))
    X, y = X[order].astype(np.float32), y[order]
    lda = StreamingLDA.empty(n_classes, width, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for part in np.array_split(np.arange(len(y)), 4):
        lda = lda.added(torch.from_numpy(X[part]), torch.from_numpy(y[part]), None, gen, None)
    lda = lda._solved(torch.float32)  # the last rows may not have called for a solve
    ref = LinearDiscriminantAnalysis(
        solver="lsqr", shrinkage=SHRINKAGE, priors=np.full(n_classes, 1 / n_classes)
    ).fit(X.astype(np.float64), y)
    scale = len(y) / (len(y) - n_classes)  # within-class scatter / (n - classes), not / n
    np.testing.assert_allclose(lda.weight.numpy() * scale, ref.coef_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        lda.bias.numpy() * scale, ref.intercept_ - np.log(1 / n_classes), rtol=1e-4, atol=1e-4
    )
    pred = lda.predict(torch.from_numpy(X), None).numpy()
    np.testing.assert_array_equal(pred, ref.predict(X))


def test_a_class_without_rows_is_never_predicted_nor_served():
    lda = StreamingLDA.empty(3, 2, torch.device("cpu"))
    X = torch.tensor([[0.0, 0.0], [0.1, 0.2], [3.0, 3.0], [3.1, 2.9]])
    lda = lda.added(X, torch.tensor([0, 0, 2, 2]), None, torch.Generator(), None)
    assert lda.predict(torch.tensor([[1.5, 1.5], [3.0, 3.0]]), None).tolist()[1] == 2
    assert set(lda.predict(torch.randn(50, 2) * 3, None).tolist()) <= {0, 2}
    assert not lda.covers(None)  # class 1 has no rows
    assert lda.covers(torch.tensor([0.0, -float("inf"), 0.0]))  # unless it is masked
    dropped = lda.dropped([2])
    assert set(dropped.predict(torch.randn(20, 2), None).tolist()) == {0}


def test_after_fit_it_serves_and_the_stream_learns_like_fit_on_every_row(digits):
    """The README quickstart: with it, the 1,000 streamed rows bring the accuracy to
    that of fit on all 1,500; the copies alone stay below."""
    X, y = digits
    ends = {}
    for rates in [(1.0, 0.1, 0.01, "lda"), (1.0, 0.1, 0.01)]:
        clf = OnlineFineTuneClassifier(random_state=0, head_rates=rates).fit(X[:500], y[:500])
        for s in range(500, 1500, 100):
            clf.partial_fit(X[s : s + 100], y[s : s + 100])
        ends[rates] = clf.score(X[1500:], y[1500:])
        if "lda" not in rates:
            assert clf.learner_.rates.lda is None
    batch = OnlineFineTuneClassifier(random_state=0).fit(X[:1500], y[:1500])
    assert ends[(1.0, 0.1, 0.01, "lda")] >= batch.score(X[1500:], y[1500:]) - 0.01
    assert ends[(1.0, 0.1, 0.01, "lda")] > ends[(1.0, 0.1, 0.01)] + 0.01  # 0.923 / 0.899


def test_the_served_head_is_the_closed_form_and_the_trunk_learns_through_a_copy(digits):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    rates = clf.learner_.rates
    for s in range(500, 1000, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    assert rates is clf.learner_.rates and rates.current == len(rates.rates)
    lda = rates.lda
    assert torch.equal(clf.module_.head.weight.detach(), lda.weight)
    assert torch.equal(clf.module_.head.bias.detach(), lda.bias)
    # It counts the 500 rows of fit (the replay memory's) and every streamed row once.
    assert float(lda.counts.sum()) == 1000.0
    np.testing.assert_array_equal(lda.counts.numpy(), np.bincount(y[:1000], minlength=10))


def test_a_concept_change_drops_its_means_and_a_copy_serves(digits):
    X, y = digits
    flipped = (y + 1) % 10
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    for s in range(500, 1000, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    for s in range(1000, 1500, 100):
        clf.partial_fit(X[s : s + 100], flipped[s : s + 100])
    assert clf.drifts_  # the switch was detected
    assert clf.score(X[1500:], flipped[1500:]) > 0.7


def test_a_call_failing_after_it_learned_leaves_it_as_it_was(digits, monkeypatch):
    from skocl._continual import ReplayMemory

    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    clf.partial_fit(X[500:600], y[500:600])
    before = clf.learner_.rates.state_dict()
    head = [p.detach().clone() for p in clf.module_.head.parameters()]

    def broken(*args, **kwargs):  # after the head's fine-tune, the candidate updated
        raise RuntimeError("offer failed")

    monkeypatch.setattr(ReplayMemory, "offer", broken)
    with pytest.raises(RuntimeError, match="offer failed"):
        clf.partial_fit(X[600:700], y[600:700])
    assert_same_tree(before, clf.learner_.rates.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(head, clf.module_.head.parameters()))


def test_it_grows_with_the_label_set_and_serves_once_it_has_every_class(digits):
    X, y = digits
    old = y < 5
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[old][:400], y[old][:400])
    clf.partial_fit(X[old][400:500], y[old][400:500])
    lda = clf.learner_.rates.lda
    assert lda.counts.shape == (5,)
    clf.partial_fit(X[:100], y[:100])  # brings classes 5-9
    lda = clf.learner_.rates.lda
    assert lda.counts.shape == (10,) and lda.sums.shape == (10, clf.module_.head.in_features)
    np.testing.assert_array_equal(lda.counts.numpy()[5:], np.bincount(y[:100], minlength=10)[5:])
    for s in range(100, 1000, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    assert clf.score(X[1500:], y[1500:]) > 0.85


@pytest.mark.parametrize(
    "rates, match",
    [(("lda",), "at least one multiple"), ((1.0, "lda", "lda"), r"head_rates\[2\]"),
     ("lda", "instance of 'tuple'")],
)  # fmt: skip
def test_bad_entries_are_an_error_naming_them(digits, rates, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        OnlineFineTuneClassifier(head_rates=rates).fit(X[:100], y[:100])


@pytest.mark.parametrize("fusion", ["ema", "wise"])
def test_with_fusion_it_never_serves(digits, fusion):
    """Fused weights average the served head over time (or with the start): a
    closed-form head, of another scale, is not averaged with a gradient-trained one."""
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0, fusion=fusion).fit(X[:500], y[:500])
    for s in range(500, 1500, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
        rates = clf.learner_.rates
        assert rates.current < len(rates.rates) and not np.isnan(clf.head_lr_)
    assert rates.lda is not None and rates.scored == 10  # still scored, never served


def test_rows_count_by_their_weight(digits):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    clf.partial_fit(X[500:600], y[500:600])
    before = clf.learner_.rates.lda.counts.clone()
    w = np.where(np.arange(100) % 2 == 0, 0.0, 2.0)  # half weigh nothing, half twice
    clf.partial_fit(X[600:700], y[600:700], sample_weight=w)
    added = clf.learner_.rates.lda.counts - before
    expected = np.bincount(y[600:700], weights=w, minlength=10)
    np.testing.assert_allclose(added.numpy(), expected)


def test_its_statistics_weigh_at_most_max_rows(digits, monkeypatch):
    from skocl import _lda_head

    monkeypatch.setattr(_lda_head, "MAX_ROWS", 700.0)
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    for s in range(500, 1500, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
        lda = clf.learner_.rates.lda
        assert float(lda.counts.sum()) <= 700.0 + 1e-6
        assert float(lda.cov_counts.sum()) <= 700.0 + 1e-6
    assert clf.score(X[1500:], y[1500:]) > 0.88


def test_a_pretrained_network_starts_it_from_the_stream(digits):
    """A user's trained network (no fit, an empty replay memory): the candidate counts
    the chunks' rows from the first call."""
    X, y = digits
    donor = OnlineFineTuneClassifier(random_state=0).fit(X[:500], y[:500])
    clf = OnlineFineTuneClassifier(module=donor.module_, classes=np.arange(10), random_state=0)
    clf.partial_fit(X[500:600], y[500:600])
    lda = clf.learner_.rates.lda
    np.testing.assert_array_equal(lda.counts.numpy(), np.bincount(y[500:600], minlength=10))
    for s in range(600, 1500, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    assert clf.score(X[1500:], y[1500:]) > 0.88


def test_a_large_memory_starts_it_from_a_sample(digits, monkeypatch):
    import skocl._learner as learner_module

    monkeypatch.setattr(learner_module, "MEMORY_HEAD_ROWS", 300)
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:1000], y[:1000])
    assert len(clf.learner_.memory) == 1000
    clf.partial_fit(X[1000:1100], y[1000:1100])
    lda = clf.learner_.rates.lda
    assert float(lda.counts.sum()) == 300 + 100  # a sample of the memory, then the chunk


def test_a_class_s_first_rows_give_it_weights_at_once():
    lda = StreamingLDA.empty(3, 2, torch.device("cpu"))
    gen = torch.Generator()
    X = torch.randn(400, 2)
    lda = lda.added(X, torch.randint(0, 2, (400,)), None, gen)
    far = torch.tensor([[8.0, 8.0], [8.2, 7.9]])
    lda = lda.added(far, torch.tensor([2, 2]), None, gen)  # 2 rows: no solve is due
    assert lda.covers(None) and bool(lda.weight[2].abs().sum() > 0)
    assert lda.predict(far, None).tolist() == [2, 2]


def test_rows_waiting_for_the_next_solve_are_saved_and_resume_exactly(digits, tmp_path):
    import skocl

    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X[:1000], y[:1000])
    for s in range(1000, 1064, 32):
        clf.partial_fit(X[s : s + 32], y[s : s + 32])
    assert clf.learner_.rates.lda.buffer  # 64 rows since the last solve: none due yet
    again = skocl.load(skocl.save(clf, tmp_path / "model.skocl"))
    assert_same_tree(clf.learner_.rates.lda.state_dict(), again.learner_.rates.lda.state_dict())
    for s in range(1064, 1500, 32):
        clf.partial_fit(X[s : s + 32], y[s : s + 32])
        again.partial_fit(X[s : s + 32], y[s : s + 32])
    np.testing.assert_array_equal(clf.predict_proba(X[1500:]), again.predict_proba(X[1500:]))
    assert_same_tree(clf.learner_.rates.lda.state_dict(), again.learner_.rates.lda.state_dict())


def test_a_wider_input_samples_fewer_rows_and_solves_less_often():
    from skocl._lda_head import covariance_rows, solve_spacing

    assert covariance_rows(256) == 256 and solve_spacing(256) == 1.0
    assert covariance_rows(512) == 64 and solve_spacing(512) == 8.0
    assert covariance_rows(4096) == 16 and solve_spacing(32) == 1.0


# --------------------------------------------------------------------------- from scratch
def _switching(seed=0, n=6000, switch=3000):
    """Three classes; from row ``switch`` every label moves to the next class."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n, 10, n_informative=6, n_classes=3, n_clusters_per_class=1, random_state=seed
    )
    return X, np.where(np.arange(n) >= switch, (y + 1) % 3, y)


def _stream(clf, X, y, start, stop, chunk=100, each=None):
    for s in range(start, stop, chunk):
        clf.partial_fit(X[s : s + chunk], y[s : s + chunk])
        if each is not None:
            each(clf, s)


def test_from_scratch_the_candidates_start_at_the_first_concept_change():
    from skocl._lda_head import REFRESH_ROWS, REFRESH_SHARE

    X, y = _switching()
    clf = OnlineFineTuneClassifier(random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    before = []
    _stream(clf, X, y, 100, 3000, each=lambda c, s: before.append(c.learner_.rates.off))
    assert all(before) and clf.learner_.rates.weight is None  # still learning: none
    assert clf.head_lr_ == clf.head_lr
    _stream(clf, X, y, 3000, 5000)
    rates = clf.learner_.rates
    assert not rates.off and rates.refresh and rates.lda.max_rows == REFRESH_ROWS
    assert rates.lda.share == REFRESH_SHARE
    assert rates.rates == (1.0,) and rates.weight.shape[0] == 1  # one copy, at head_lr
    # Scaled down at each solve: at most the rows joined since over REFRESH_ROWS.
    assert float(rates.lda.counts.sum()) <= REFRESH_ROWS + rates.lda.pending + 1e-6
    assert clf.score(X[5000:], y[5000:]) > 0.88  # 0.906 (head_rates=(1.0,): 0.888)


def test_a_stationary_stream_starts_no_candidates(digits):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0)
    clf.partial_fit(X[:100], y[:100])
    _stream(clf, X, y, 100, len(y))
    assert clf.learner_.rates.off and clf.learner_.rates.weight is None


def test_a_drift_that_brings_new_classes_starts_them_too(digits):
    X, y = digits
    rng = np.random.RandomState(0)
    test = rng.rand(len(y)) < 0.25
    Xtr, ytr, Xte, yte = X[~test], y[~test], X[test], y[test]
    order = np.concatenate(  # classes 0-4, then 5-9: a class-incremental stream
        [rng.permutation(np.flatnonzero(ytr < 5)), rng.permutation(np.flatnonzero(ytr >= 5))]
    )
    switch = int((ytr < 5).sum())
    old, new = yte < 5, yte >= 5

    def stream(**params):
        clf, started = OnlineFineTuneClassifier(random_state=0, **params), None
        for i, s in enumerate(range(0, len(order), 32)):
            part = order[s : s + 32]
            clf.partial_fit(Xtr[part], ytr[part], **({"classes": np.arange(10)} if i == 0 else {}))
            if started is None and clf.learner_.rates.refresh:
                started = s
        pred = clf.predict(Xte)
        return started, (pred[old] == yte[old]).mean(), (pred[new] == yte[new]).mean()

    started, acc_old, acc_new = stream()
    assert switch - 32 < started <= switch + 96  # at the drift the new classes bring
    assert acc_old > 0.94 and acc_new > 0.97  # 0.961, 0.991 (copies alone: 0.931, 0.968)
    assert stream(memory_size=0)[0] is None  # no memory, no count of the classes shown


def test_started_at_a_change_it_counts_the_replayed_rows_too():
    from skocl._head_rates import HeadRates

    torch.manual_seed(0)
    head = torch.nn.Linear(6, 3)
    feats, y = torch.randn(40, 6), torch.arange(40) % 3
    counted = {}
    for refresh in (False, True):
        rates = HeadRates()
        if refresh:
            rates.off = True  # a head learning from scratch
            rates.start_at_change(head, "adam")
        else:
            rates.start(head, "adam", True)
        gen = torch.Generator().manual_seed(0)
        rates.fine_tune(head, feats, y, None, 1, None, 1e-2, 0.0, False, new=10, gen=gen)
        counted[refresh] = float(rates.lda.counts.sum())
    assert counted == {False: 10.0, True: 40.0}  # the chunk's 10 rows, or all 40


def test_candidates_started_at_a_change_are_saved_and_put_back_by_a_failed_call(
    tmp_path, monkeypatch
):
    import skocl
    from skocl._continual import ReplayMemory

    X, y = _switching()
    clf = OnlineFineTuneClassifier(random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    _stream(clf, X, y, 100, 3000)
    before = clf.learner_.rates.state_dict()
    weights = [p.detach().clone() for p in clf.module_.parameters()]

    def broken(*args, **kwargs):
        raise RuntimeError("offer failed")

    with monkeypatch.context() as m:  # the call that finds the change fails
        m.setattr(ReplayMemory, "offer", broken)
        for s in range(3000, 3300, 100):
            with pytest.raises(RuntimeError, match="offer failed"):
                clf.partial_fit(X[s : s + 100], y[s : s + 100])
            assert_same_tree(before, clf.learner_.rates.state_dict())
            assert all(torch.equal(a, b) for a, b in zip(weights, clf.module_.parameters()))
    _stream(clf, X, y, 3000, 3500)
    assert clf.learner_.rates.refresh
    again = skocl.load(skocl.save(clf, tmp_path / "model.skocl"))
    assert again.learner_.rates.refresh
    assert again.learner_.rates.lda.max_rows == clf.learner_.rates.lda.max_rows
    assert again.learner_.rates.lda.share == clf.learner_.rates.lda.share
    _stream(clf, X, y, 3500, 4500)
    _stream(again, X, y, 3500, 4500)
    np.testing.assert_array_equal(clf.predict_proba(X[5000:]), again.predict_proba(X[5000:]))
