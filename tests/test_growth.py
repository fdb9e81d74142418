"""Classes that appear mid-stream: the head grows, known classes are kept exactly."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from skocl import OnlineFineTuneClassifier


@pytest.fixture
def blobs():
    X, y = make_blobs(n_samples=400, centers=4, n_features=5, random_state=0)
    return X, y


def test_new_class_in_the_middle_keeps_known_rows_and_optimizer_state(blobs):
    X, y = blobs
    clf = OnlineFineTuneClassifier(random_state=0)
    known = np.isin(y, [0, 2, 3])
    clf.partial_fit(X[known][:100], y[known][:100])
    np.testing.assert_array_equal(clf.classes_, [0, 2, 3])
    W, b = clf.module_.head.weight.detach().clone(), clf.module_.head.bias.detach().clone()
    state = {
        k: v.clone() for k, v in clf.learner_.head_optimizer.state[clf.module_.head.weight].items()
    }
    opt = clf.learner_.head_optimizer

    clf.set_params(head_steps=0, trunk_lr=0.0)  # grow without learning, to compare exactly
    clf.partial_fit(X[y == 1][:10], y[y == 1][:10])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2, 3])
    W2, b2 = clf.module_.head.weight, clf.module_.head.bias
    assert W2.shape == (4, W.shape[1])
    assert torch.equal(W2[[0, 2, 3]], W) and torch.equal(b2[[0, 2, 3]], b)
    assert clf.learner_.head_optimizer is opt  # not rebuilt
    moved = opt.state[W2]
    assert torch.equal(moved["step"], state["step"])
    assert torch.equal(moved["exp_avg"][[0, 2, 3]], state["exp_avg"])
    assert torch.equal(moved["exp_avg_sq"][[0, 2, 3]], state["exp_avg_sq"])
    assert torch.count_nonzero(moved["exp_avg"][1]) == 0
    assert clf.predict_proba(X).shape == (len(X), 4)


def test_grown_class_is_learned(blobs):
    X, y = blobs
    clf = OnlineFineTuneClassifier(random_state=0, head_lr=0.05)
    order = np.argsort(y, kind="stable")  # classes arrive one after another
    for _ in range(3):
        for lo in range(0, len(order), 25):
            idx = order[lo : lo + 25]
            clf.partial_fit(X[idx], y[idx])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2, 3])
    assert (clf.predict(X[y == 3]) == 3).mean() > 0.8


def test_string_labels_grow_and_first_chunk_may_hold_one_class(blobs):
    X, y = blobs
    names = np.array(["north", "east", "south", "west"])[y]
    clf = OnlineFineTuneClassifier(random_state=0)
    clf.partial_fit(X[y == 0][:10], names[y == 0][:10])
    np.testing.assert_array_equal(clf.classes_, ["north"])
    clf.partial_fit(X[:50], names[:50])
    assert set(clf.classes_) == set(names[:50]) | {"north"}
    assert set(clf.predict(X)) <= set(clf.classes_)


def test_fixed_label_set_still_rejects_unknown_labels(blobs):
    X, y = blobs
    clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X[y < 2], y[y < 2], classes=[0, 1])
    with pytest.raises(ValueError, match="fixed by `classes`"):
        clf.partial_fit(X, y)
    fixed = OnlineFineTuneClassifier(classes=[0, 1, 2, 3], max_iter=3).fit(X[y < 3], y[y < 3])
    np.testing.assert_array_equal(fixed.classes_, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="fixed"):
        fixed.partial_fit(X[:5], [0, 1, 2, 9, 9])


def test_mixed_label_types_are_an_error(blobs):
    X, y = blobs
    clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X[:20], y[:20])
    before = clf.module_.head.weight.detach().clone()
    with pytest.raises(ValueError, match="(?i)mix"):
        clf.partial_fit(X[:2], np.array(["a", "b"], dtype=object))
    assert torch.equal(before, clf.module_.head.weight)
