"""Dark experience replay (``logit_replay``): the logits the replay memory keeps, the loss
they add to the trunk's update, and what it buys on Permuted-Digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from skocl import OnlineFineTuneClassifier
from skocl._continual import batch_targets, logit_gaps, logit_targets
from skocl._mlp_grads import MLPGrads
from skocl._steps import weighted_loss
from skocl.datasets import make_drift_stream


def _logits(clf, X):
    with torch.no_grad():
        return clf.learner_.module(torch.as_tensor(X, dtype=torch.float32))


def test_a_kept_row_keeps_the_network_s_logits_of_when_it_was_kept():
    X, y, _ = make_drift_stream(300, 6, 3, drift_points=(), random_state=0)
    clf = OnlineFineTuneClassifier(logit_replay=0.1, drift_detector=None, random_state=0)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    memory = clf.learner_.memory
    assert len(memory) == 100 and memory.Z.shape == (100, 3)
    # Kept after the update, and the network has not moved since.
    torch.testing.assert_close(memory.Z, _logits(clf, memory.X.numpy()))
    kept = memory.Z.clone()
    clf.partial_fit(X[100:200], y[100:200])
    # Rows kept before keep their logits (the second call's are appended after
    # them); the network's logits for them have moved.
    assert len(memory.Z) == 200 and torch.equal(memory.Z[:100], kept)
    assert not torch.allclose(_logits(clf, memory.X[:100].numpy()), kept)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_rows_that_fit_keeps_carry_no_logits():
    X, y, _ = make_drift_stream(400, 6, 3, drift_points=(), random_state=0)
    clf = OnlineFineTuneClassifier(
        max_iter=5, logit_replay=0.1, drift_detector=None, random_state=0
    )
    clf.fit(X[:200], y[:200])
    assert clf.learner_.memory.Z is None
    clf.partial_fit(X[200:300], y[200:300])
    Z = clf.learner_.memory.Z
    kept = torch.isfinite(Z).all(1)
    # Only the stream's rows have logits; fit's 200 rows still make up most of it.
    assert 0 < int(kept.sum()) <= 100 and int((~kept).sum()) >= 100
    assert torch.isnan(Z[~kept]).all()


def test_zero_keeps_no_logits_and_a_positive_weight_changes_the_trunk():
    X, y, _ = make_drift_stream(400, 6, 3, drift_points=(), random_state=0)
    models = []
    for weight in (0.0, 0.1):
        clf = OnlineFineTuneClassifier(logit_replay=weight, drift_detector=None, random_state=0)
        for s in range(0, 400, 100):
            clf.partial_fit(X[s : s + 100], y[s : s + 100], classes=[0, 1, 2])
        models.append(clf)
    assert models[0].learner_.memory.Z is None
    assert torch.isfinite(models[1].learner_.memory.Z).all()
    trunk = [m.learner_.trunk[0].weight for m in models]
    # The first call has no memory to replay: the two differ from the second call on.
    assert not torch.equal(*trunk)


def test_a_new_class_leaves_older_rows_without_a_target():
    X, y, _ = make_drift_stream(600, 6, 3, drift_points=(), random_state=0)
    clf = OnlineFineTuneClassifier(logit_replay=0.1, drift_detector=None, random_state=0)
    first = y < 2
    clf.partial_fit(X[first][:100], y[first][:100])  # classes 0 and 1 only
    assert clf.learner_.memory.Z.shape[1] == 2
    clf.partial_fit(X[200:400], y[200:400])  # class 2 appears: the head grows
    Z, memory_y = clf.learner_.memory.Z, clf.learner_.memory.y
    assert Z.shape[1] == 3
    older = torch.isnan(Z[:, 2])
    assert older.any() and (~older).any()  # rows of the second call have all three
    gaps, count = logit_gaps(torch.zeros_like(Z), logit_targets(Z, None, 3))
    assert int(count) == 3 * int((~older).sum()) and (gaps[older] == 0).all()
    assert set(memory_y[~older].tolist()) <= {0, 1, 2}


def test_gaps_count_only_rows_with_every_predictable_class():
    nan = math.nan
    Z = torch.tensor([[1.0, 2.0, nan], [1.0, nan, nan], [1.0, 2.0, 3.0]])
    z = torch.zeros(3, 3)
    gaps, count = logit_gaps(z, logit_targets(Z, None, 3))  # only the last row counts
    assert int(count) == 3
    torch.testing.assert_close(gaps, torch.tensor([[0.0, 0, 0], [0, 0, 0], [-1, -2, -3]]))
    mask = torch.tensor([0.0, 0.0, -math.inf])  # the third class not shown yet
    gaps, count = logit_gaps(z, logit_targets(Z, mask, 3))
    assert int(count) == 4  # rows 0 and 2, on the first two classes
    torch.testing.assert_close(gaps, torch.tensor([[-1.0, -2, 0], [0, 0, 0], [-1, -2, 0]]))
    # Logits kept for fewer classes than the head has: the others have no target.
    gaps, count = logit_gaps(torch.zeros(1, 3), logit_targets(torch.tensor([[1.0, 2.0]]), mask, 3))
    assert int(count) == 2


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("missing", [False, True])
def test_the_closed_form_gradient_with_kept_logits_equals_autograd(masked, missing):
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(7, 16), nn.ReLU()).double()
    head = nn.Linear(16, 4).double()
    params = list(trunk.parameters())
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 7, generator=g, dtype=torch.float64)
    y = torch.randint(3, (40,), generator=g)
    targets = torch.randn(15, 4, generator=g, dtype=torch.float64)
    if missing:
        targets[:4, 1] = math.nan  # rows without a target for class 1
    mask = None
    if masked:
        mask = torch.zeros(4, dtype=torch.float64)
        mask[3] = -math.inf
    kept = batch_targets(targets, mask, 4, [15], 0.3)[0]
    assert (kept[1] is None) == (not masked and not missing)  # every target counts
    loss, grads = MLPGrads.of(trunk, head, params)(X, y, None, mask, kept)
    z = head(trunk(X))
    gaps, count = logit_gaps(z[-15:], (kept[0].t(), None if kept[1] is None else kept[1].t()))
    want_loss = weighted_loss(z, y, None, mask) + 0.3 / count * gaps.square().sum()
    want = torch.autograd.grad(want_loss, params)
    torch.testing.assert_close(loss, want_loss.detach(), rtol=1e-12, atol=1e-12)
    for got, exp in zip(grads, want, strict=True):
        torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-12)


def test_a_negative_weight_is_an_error_naming_it():
    X, y, _ = make_drift_stream(100, 6, 3, drift_points=(), random_state=0)
    with pytest.raises(ValueError, match="logit_replay"):
        OnlineFineTuneClassifier(logit_replay=-0.1).partial_fit(X, y, classes=[0, 1, 2])


def _permuted_digits(seed=0, tasks=3):
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X / 16.0, y, test_size=0.3, random_state=seed, stratify=y
    )
    rng = np.random.RandomState(seed)
    perms = [np.arange(64)] + [rng.permutation(64) for _ in range(tasks - 1)]
    return [(X_tr[:, p], y_tr) for p in perms], [(X_te[:, p], y_te) for p in perms]


def test_logit_replay_forgets_less_on_permuted_digits():
    train, test = _permuted_digits()
    scores = {}
    for weight in (0.0, 0.1):
        clf = OnlineFineTuneClassifier(logit_replay=weight, random_state=0)
        rng, first = np.random.RandomState(1), True
        for X, y in train:
            for _ in range(2):
                order = rng.permutation(len(y))
                for s in range(0, len(y), 32):
                    idx = order[s : s + 32]
                    clf.partial_fit(X[idx], y[idx], classes=np.arange(10) if first else None)
                    first = False
        scores[weight] = np.mean([clf.score(X, y) for X, y in test])
    # Measured: 0.942 with labels alone, 0.964 with logits.
    assert scores[0.1] > scores[0.0] + 0.01
    assert scores[0.1] > 0.95
