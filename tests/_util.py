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


def same_bits(a, b) -> bool:
    """Two tensors of one shape and dtype with the same bits (NaN, which the replay
    memory keeps for logits it has none of, equal to NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        a, b = (t.reshape(-1).contiguous().view(torch.uint8) for t in (a, b))
    return torch.equal(a, b)


def assert_same_tree(a, b, path="state"):
    """Two nests of dicts, lists and tuples hold equal values and bit-identical tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and same_bits(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_tree(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}[{i}]")
    else:
        assert a == b, path
