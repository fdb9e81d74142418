"""Helpers shared by the tests."""

import torch


def state(clf):
    """A detached copy of a fitted estimator's module weights."""
    return {k: v.detach().clone() for k, v in clf.module_.state_dict().items()}


def assert_same_state(a, b):
    """Two state dicts hold bit-identical tensors."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
