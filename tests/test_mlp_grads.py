"""The closed-form gradients of the default network (``skocl._mlp_grads``) against
autograd, and the networks they refuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skocl import OnlineFineTuneClassifier
from skocl._mlp_grads import _ROWS_FIRST, MLPGrads, PlainForward
from skocl._steps import weighted_loss


def _net(widths, activation=nn.ReLU, n_features=7, n_classes=5, dtype=torch.float64):
    torch.manual_seed(0)
    layers, width = [], n_features
    for size in widths:
        layers += [nn.Linear(width, size), activation()]
        width = size
    return nn.Sequential(*layers).to(dtype), nn.Linear(width, n_classes).to(dtype)


def _autograd(trunk, head, params, X, y, w, mask):
    loss = weighted_loss(head(trunk(X)), y, w, mask)
    return loss, torch.autograd.grad(loss, params)


# (trunk widths, parameters asked for): an empty trunk has no parameters of its own.
NETWORKS = [
    (widths, which)
    for widths in [(16,), (16, 9), ()]
    for which in ["trunk", "all", "last layer"]
    if widths or which != "trunk"
]


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity])
@pytest.mark.parametrize("widths, which", NETWORKS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("n", [33, 150])  # both layouts of a hidden layer's dW
def test_equal_to_autograd(activation, widths, which, weighted, masked, n):
    trunk, head = _net(widths, activation)
    params = {
        "trunk": list(trunk.parameters()),
        "all": list(trunk.parameters()) + list(head.parameters()),
        "last layer": list(head.parameters()),
    }[which]
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, 7, generator=g, dtype=torch.float64)
    y = torch.randint(4, (n,), generator=g)
    w = torch.rand(n, generator=g, dtype=torch.float64) if weighted else None
    mask = None
    if masked:  # the last class not shown yet: no row has it
        mask = torch.zeros(5, dtype=torch.float64)
        mask[4] = float("-inf")
    closed = MLPGrads.of(trunk, head, params)
    assert closed is not None and 33 < _ROWS_FIRST <= 150
    loss, grads = closed(X, y, w, mask)
    want_loss, want = _autograd(trunk, head, params, X, y, w, mask)
    torch.testing.assert_close(loss, want_loss.detach(), rtol=1e-12, atol=1e-12)
    assert len(grads) == len(params)
    for p, got, exp in zip(params, grads, want, strict=True):
        assert got.shape == p.shape and got.is_contiguous()
        torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-12)


def test_nested_sequential_trunk_equal_to_autograd():
    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Sequential(nn.Linear(7, 6), nn.Tanh()), nn.Sequential(nn.Linear(6, 4), nn.ReLU())
    ).double()
    head = nn.Linear(4, 3).double()
    params = list(trunk.parameters())
    X, y = torch.randn(10, 7, dtype=torch.float64), torch.randint(3, (10,))
    loss, grads = MLPGrads.of(trunk, head, params)(X, y, None)
    for got, exp in zip(grads, _autograd(trunk, head, params, X, y, None, None)[1], strict=True):
        torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-12)


def test_float32_default_network_close_to_autograd():
    trunk, head = _net((256,), dtype=torch.float32, n_features=20, n_classes=4)
    params = list(trunk.parameters())
    X, y = torch.randn(64, 20), torch.randint(4, (64,))
    loss, grads = MLPGrads.of(trunk, head, params)(X, y, None)
    want_loss, want = _autograd(trunk, head, params, X, y, None, None)
    torch.testing.assert_close(loss, want_loss.detach())
    for got, exp in zip(grads, want, strict=True):
        torch.testing.assert_close(got, exp)


def _hooked(trunk, head):
    trunk[0].register_forward_hook(lambda *a: None)
    return trunk, head


@pytest.mark.parametrize(
    "build",
    [
        lambda: _net((8,), nn.GELU),  # an activation it has no backward for
        lambda: (nn.Sequential(nn.Linear(7, 8), nn.ReLU(), nn.Dropout(0.1)), nn.Linear(8, 5)),
        lambda: (nn.Sequential(nn.Linear(7, 8, bias=False), nn.ReLU()), nn.Linear(8, 5)),
        lambda: (nn.Sequential(nn.Linear(7, 8), nn.ReLU()), nn.Linear(8, 5, bias=False)),
        lambda: (nn.Sequential(nn.Linear(7, 8), nn.ReLU(), nn.ReLU()), nn.Linear(8, 5)),
        lambda: (nn.Sequential(nn.Linear(7, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 5))),
        lambda: (nn.Sequential(nn.ReLU(), nn.Linear(7, 8)), nn.Linear(8, 5)),
        lambda: _hooked(*_net((8,))),
        lambda: (lambda lin: (nn.Sequential(lin, nn.ReLU(), lin, nn.ReLU()), nn.Linear(8, 5)))(
            nn.Linear(8, 8)
        ),
        lambda: (nn.Sequential(nn.Linear(7, 8), nn.BatchNorm1d(8)), nn.Linear(8, 5)),
    ],
    ids=[
        "gelu",
        "dropout",
        "no trunk bias",
        "no head bias",
        "two activations",
        "sequential head",
        "activation first",
        "forward hook",
        "shared layer",
        "batch norm",
    ],
)
def test_other_networks_are_left_to_autograd(build):
    trunk, head = build()
    assert MLPGrads.of(trunk, head, list(trunk.parameters())) is None


def test_a_parameter_outside_the_network_is_left_to_autograd():
    trunk, head = _net((8,))
    assert MLPGrads.of(trunk, head, [*trunk.parameters(), nn.Parameter(torch.ones(1))]) is None


def test_a_tensor_hook_is_left_to_autograd():
    trunk, head = _net((8,))
    trunk[0].weight.register_hook(lambda g: g * 2)
    assert MLPGrads.of(trunk, head, list(trunk.parameters())) is None


def test_a_forward_hook_on_the_network_still_acts():
    """A user's hook is honoured: the update goes through autograd, which calls it. A
    hook that zeroes the trunk's output gives its weights no gradient: they stay."""
    X = np.random.RandomState(0).randn(64, 5).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    trunk = nn.Sequential(nn.Linear(5, 8), nn.ReLU())
    trunk[0].register_forward_hook(lambda m, i, o: o * 0)
    module = nn.Sequential(trunk, nn.Linear(8, 2))
    clf = OnlineFineTuneClassifier(module, memory_size=0, drift_detector=None, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1])
    before = clf.module_[0][0].weight.detach().clone()
    clf.partial_fit(X, y)
    assert torch.equal(clf.module_[0][0].weight, before)
    assert not torch.equal(clf.module_[1].bias, module[1].bias)  # the head's bias learned


def test_layers_that_depend_on_the_mode_still_learn_in_train_mode():
    """Modes are switched around the steps only where a layer depends on them:
    BatchNorm's running statistics move during the trunk's step (train mode), and the
    network serves in eval mode after the call either way."""
    X = np.random.RandomState(0).randn(64, 5).astype(np.float32) + 3.0
    y = (X[:, 0] > 3).astype(int)
    for norm, mode_free in ((nn.BatchNorm1d(8), False), (nn.Identity(), True)):
        trunk = nn.Sequential(nn.Linear(5, 8), norm, nn.ReLU())
        module = nn.Sequential(trunk, nn.Linear(8, 2))
        clf = OnlineFineTuneClassifier(module, drift_detector=None, random_state=0)
        clf.partial_fit(X, y, classes=[0, 1])
        assert clf.learner_.mode_free is mode_free
        if not mode_free:
            stats = clf.module_[0][1].running_mean.clone()
            clf.partial_fit(X, y)
            assert not torch.equal(clf.module_[0][1].running_mean, stats)
        assert not any(m.training for m in clf.module_.modules())


def test_the_default_network_is_mode_free():
    from skocl._modules import build_mlp, is_mode_free

    assert is_mode_free(build_mlp(5, 3, (16, 8), "relu", 0.0))
    assert is_mode_free(build_mlp(5, [3, 2], (16,), "tanh", 0.0))
    assert not is_mode_free(build_mlp(5, 3, (16,), "relu", 0.1))  # dropout


def _check(trunk, head, params, n=20, seed=0):
    """MLPGrads.of for the network as it is now, against autograd."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, trunk[0].in_features, generator=g, dtype=torch.float64)
    y = torch.randint(head.out_features, (n,), generator=g)
    closed = MLPGrads.of(trunk, head, params)
    assert closed is not None
    loss, grads = closed(X, y, None)
    want_loss, want = _autograd(trunk, head, params, X, y, None, None)
    torch.testing.assert_close(loss, want_loss.detach(), rtol=1e-12, atol=1e-12)
    for got, exp in zip(grads, want, strict=True):
        torch.testing.assert_close(got, exp, rtol=1e-10, atol=1e-12)
    return closed


def test_what_was_built_is_reused_only_for_the_same_network():
    """MLPGrads.of and PlainForward.of reuse what they built for a module while its
    layers, their tensors and where those keep their values are the same; any change
    builds again, and the gradients and forward follow it."""
    trunk, head = _net((16,))
    params = list(trunk.parameters())
    first = _check(trunk, head, params)
    assert _check(trunk, head, params) is first  # unchanged: reused
    forward = PlainForward.of(trunk)
    assert PlainForward.of(trunk) is forward
    # Weights stepped in place: the same objects, which see the new values.
    with torch.no_grad():
        trunk[0].weight.mul_(2.0)
    assert _check(trunk, head, params) is first
    # A weight's values moved elsewhere (.data set), a layer replaced, a head grown:
    # each is built again.
    trunk[0].weight.data = torch.randn(16, 7, dtype=torch.float64)
    second = _check(trunk, head, params, seed=1)
    assert second is not first
    X = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(PlainForward.of(trunk)(X), trunk(X).detach())
    trunk[0] = nn.Linear(7, 16).double()
    params = list(trunk.parameters())
    third = _check(trunk, head, params, seed=2)
    assert third is not second
    torch.testing.assert_close(PlainForward.of(trunk)(X), trunk(X).detach())
    head = nn.Linear(16, 6).double()
    assert _check(trunk, head, params, seed=3) is not third
    # A hook registered since: left to autograd, which runs it.
    trunk[0].register_forward_hook(lambda *a: None)
    assert MLPGrads.of(trunk, head, params) is None and PlainForward.of(trunk) is None


@pytest.mark.parametrize("one_layer", [False, True])
def test_what_was_built_goes_with_its_module(one_layer):
    import gc
    import weakref

    trunk, head = _net((8,))
    if one_layer:  # the trunk is the layer the built objects read
        trunk = trunk[0]
    MLPGrads.of(trunk, head, list(trunk.parameters()))
    PlainForward.of(trunk)
    gone = weakref.ref(trunk)
    del trunk
    gc.collect()
    assert gone() is None
