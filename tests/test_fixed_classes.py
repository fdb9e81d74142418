"""A fixed label set whose classes appear over time: a class no row has shown yet
takes no part in the loss and is never predicted, as with a growing label set."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import skocl
from skocl import OnlineFineTuneClassifier

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16, y, test_size=0.3, random_state=0, stratify=y)


def class_incremental(X, y, given, seed=0):
    """Classes 0-4, then 5-9, each in 4 large chunks."""
    rng = np.random.RandomState(seed)
    clf = OnlineFineTuneClassifier(random_state=seed)
    first = True
    for mask in (y < 5, y >= 5):
        idx = np.flatnonzero(mask)
        for part in np.array_split(idx[rng.permutation(len(idx))], 4):
            kw = {"classes": np.arange(10)} if first and given else {}
            clf.partial_fit(X[part], y[part], **kw)
            first = False
    return clf


def test_new_classes_of_a_given_label_set_learn_as_with_a_growing_one(digits):
    X_tr, X_te, y_tr, y_te = digits
    new = y_te >= 5
    given = class_incremental(X_tr, y_tr, given=True)
    growing = class_incremental(X_tr, y_tr, given=False)
    acc_given = (given.predict(X_te[new]) == y_te[new]).mean()
    acc_growing = (growing.predict(X_te[new]) == y_te[new]).mean()
    assert acc_given > 0.85
    assert acc_given >= acc_growing - 0.03
    assert given.score(X_te, y_te) >= growing.score(X_te, y_te) - 0.03


def test_a_class_not_yet_shown_is_neither_trained_nor_predicted(digits):
    X_tr, X_te, y_tr, y_te = digits
    old = y_tr < 5
    clf = OnlineFineTuneClassifier(classes=np.arange(10), random_state=0)
    clf.partial_fit(X_tr[old][:100], y_tr[old][:100])
    rows = clf.module_.head.weight.detach()[5:].clone()
    clf.partial_fit(X_tr[old][100:300], y_tr[old][100:300])
    # Their head rows did not learn "never this class" (the Adam step is exactly zero).
    assert torch.equal(clf.module_.head.weight.detach()[5:], rows)
    proba = clf.predict_proba(X_te)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert (proba[:, 5:] == 0).all()
    assert set(clf.predict(X_te)) <= set(range(5))
    np.testing.assert_allclose(
        clf.to_skorch().predict_proba(X_te.astype(np.float32)), proba, atol=1e-6
    )
    # Once shown, a class is learned and predicted.
    for start in range(0, 1200, 200):
        clf.partial_fit(X_tr[start : start + 200], y_tr[start : start + 200])
    assert (clf.predict_proba(X_te)[:, 5:] > 0).all()
    assert clf.score(X_te, y_te) > 0.8


def test_fit_on_part_of_the_label_set(digits, tmp_path):
    X_tr, X_te, y_tr, y_te = digits
    old = y_tr < 5
    clf = OnlineFineTuneClassifier(classes=np.arange(10), random_state=0)
    clf.fit(X_tr[old], y_tr[old])
    assert list(clf.learner_.seen_classes) == [True] * 5 + [False] * 5
    assert (clf.predict_proba(X_te)[:, 5:] == 0).all()
    loaded = skocl.load(skocl.save(clf, tmp_path / "m.skocl"))
    np.testing.assert_array_equal(loaded.predict_proba(X_te), clf.predict_proba(X_te))
    for model in (clf, loaded):
        model.partial_fit(X_tr[~old][:200], y_tr[~old][:200])
    np.testing.assert_array_equal(loaded.predict_proba(X_te), clf.predict_proba(X_te))


def test_a_users_module_has_learned_every_class_it_has(digits):
    X_tr, X_te, y_tr, y_te = digits
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    clf = OnlineFineTuneClassifier(net, classes=np.arange(10), random_state=0)
    clf.partial_fit(X_tr[y_tr < 5][:200], y_tr[y_tr < 5][:200])
    assert clf.learner_.seen_classes.all()
    assert (clf.predict_proba(X_te)[:, 5:] > 0).all()
