"""Failures an adversarial audit found in the estimator, each kept fixed by a test."""

import copy
import threading
import warnings

import numpy as np
import pytest
import torch
from _util import assert_same_state, assert_same_tree, state
from torch import nn

from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream
from skocl.exceptions import NonFiniteStepWarning

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def stream():
    X, y, _ = make_drift_stream(900, 8, 3, drift_points=(), random_state=0)
    return X.astype(np.float32), y


def snapshot(clf):
    """Everything a call could change: weights, learner state, fitted attributes."""
    attrs = {
        k: (list(v) if isinstance(v, list) else v)
        for k, v in vars(clf).items()
        if k.endswith("_") and k not in ("learner_", "module_")
    }
    return state(clf), copy.deepcopy(clf.learner_.state_dict()), attrs


def assert_unchanged(clf, before):
    weights, learner, attrs = before
    assert_same_state(weights, state(clf))
    assert_same_tree(learner, clf.learner_.state_dict())
    for k, v in attrs.items():
        now = getattr(clf, k)
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, now)
        else:
            assert v == now or (v != v and now != now), k


# --------------------------------------------------------------------------- 1. weights
@pytest.mark.parametrize(
    "weights, match",
    [
        (lambda n: np.full(n, 1e39), "beyond the range of float32"),
        (lambda n: np.full(n, 1e-46), "rounds to zero in float32"),
        (lambda n: np.array(["heavy"] * n, dtype=object), "sample_weight must hold numbers"),
        (lambda n: np.r_[np.full(n - 1, 1.0), np.inf], "sample_weight contains (NaN or )?inf"),
    ],
    ids=["too large", "too small", "not numbers", "infinite"],
)
def test_bad_sample_weight_is_an_error_naming_it_before_any_change(stream, weights, match):
    X, y = stream
    clf = OnlineFineTuneClassifier(max_iter=3, random_state=0).fit(X[:300], y[:300])
    before = snapshot(clf)
    with pytest.raises(ValueError, match=match):
        clf.partial_fit(X[300:400], y[300:400], sample_weight=weights(100))
    assert_unchanged(clf, before)
    with pytest.raises(ValueError, match=match):
        OnlineFineTuneClassifier(max_iter=3).fit(X[:100], y[:100], sample_weight=weights(100))


def test_large_but_representable_weights_still_teach(stream):
    X, y = stream
    clf = OnlineFineTuneClassifier(max_iter=3, random_state=0).fit(X[:300], y[:300])
    before = state(clf)
    clf.partial_fit(X[300:400], y[300:400], sample_weight=np.full(100, 1e30))
    assert clf.n_skipped_steps_ == 0
    assert not all(torch.equal(before[k], v) for k, v in state(clf).items())


# --------------------------------------------------------------------------- 2. labels
@pytest.mark.parametrize("as_list", [True, False])
def test_mixed_label_types_are_named(stream, as_list):
    X, _ = stream
    labels = ["a", 0] * 20
    y = labels if as_list else np.array(labels, dtype=object)
    with pytest.raises(ValueError, match=r"more than one type: str \('a'\), number \(0\)"):
        OnlineFineTuneClassifier(max_iter=2).fit(X[:40], y)
    clf = OnlineFineTuneClassifier(max_iter=2, random_state=0).fit(X[:40], ["a", "b"] * 20)
    before = snapshot(clf)
    with pytest.raises(ValueError, match="more than one type"):
        clf.partial_fit(X[:40], y)
    assert_unchanged(clf, before)


# --------------------------------------------------------------------------- 3. exceptions
class FlakyTrunk(nn.Module):
    """A trunk that raises on its n-th forward pass from now (``fail_in``)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 16)
        self.fail_in, self.error = None, RuntimeError

    def forward(self, x):
        if self.fail_in is not None:
            self.fail_in -= 1
            if self.fail_in == 0:
                self.fail_in = None
                raise self.error("the user's module failed")
        return torch.relu(self.lin(x))


class FlakyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = FlakyTrunk()
        self.head = nn.Linear(16, 2)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("fail_in", [1, 2, 3, 4], ids=lambda n: f"pass{n}")
@pytest.mark.parametrize("options", [{}, {"fusion": "ema", "regularization": "l2sp"}])
def test_an_exception_inside_the_update_leaves_the_model_as_it_was(
    stream, error, fail_in, options
):
    X, y = stream
    with torch.random.fork_rng():
        net = FlakyNet()
    params = dict(module=net, dropout=0.0, batch_size=50, random_state=0, **options)
    clf = OnlineFineTuneClassifier(**params).fit(X[:300], y[:300] % 2)  # classes 0 and 1
    twin = OnlineFineTuneClassifier(**params).fit(X[:300], y[:300] % 2)
    clf.partial_fit(X[300:400], y[300:400] % 2)
    twin.partial_fit(X[300:400], y[300:400] % 2)
    # The forward passes of the call to fail (a copy counts them): every one is tried.
    probe = copy.deepcopy(clf)
    probe.module_.trunk.fail_in = 10**9
    probe.partial_fit(X[400:500], y[400:500])
    passes = 10**9 - probe.module_.trunk.fail_in
    assert passes >= 3  # the chunk's prediction, the trunk's steps, the head's features
    if fail_in > passes:
        pytest.skip(f"this call makes {passes} forward passes")
    before = snapshot(clf)
    clf.module_.trunk.fail_in, clf.module_.trunk.error = fail_in, error
    # The chunk brings class 2: the head grows before the failure.
    with pytest.raises(error):
        clf.partial_fit(X[400:500], y[400:500])
    assert_unchanged(clf, before)
    assert list(clf.classes_) == [0, 1] and clf.module_.head.out_features == 2
    assert not any(m.training for m in clf.module_.modules())
    np.testing.assert_array_equal(clf.predict_proba(X[:50]), clf.predict_proba(X[:50]))
    # It goes on exactly as a model that never saw the failed call.
    clf.partial_fit(X[400:500], y[400:500])
    twin.partial_fit(X[400:500], y[400:500])
    assert_same_state(state(twin), state(clf))
    assert_same_tree(twin.learner_.state_dict(), clf.learner_.state_dict())


def test_an_exception_in_fit_keeps_the_previous_model(stream):
    X, y = stream
    with torch.random.fork_rng():
        net = FlakyNet()
    clf = OnlineFineTuneClassifier(net, max_iter=3, random_state=0).fit(X[:200], y[:200] % 2)
    before = snapshot(clf)
    learner = clf.learner_
    clf.module_.trunk.fail_in = 5  # only the fitted copy fails; fit starts from `module`
    clf.module.trunk.fail_in = 4
    with pytest.raises(RuntimeError):
        clf.fit(X[200:400], y[200:400] % 2)
    assert clf.learner_ is learner
    assert_unchanged(clf, before)


@pytest.mark.parametrize("strategy", ["reservoir", "class_balanced"])
def test_a_call_that_fails_after_a_full_memory_kept_rows_puts_them_back(
    stream, strategy, monkeypatch
):
    """A full replay memory writes the rows it keeps over others, in place. A call that
    fails after that (here right after the offer, the last step that changes the
    memory) puts the rows they replaced back, bit for bit, and goes on exactly as a
    model that never saw it."""
    X, y = stream
    clf = OnlineFineTuneClassifier(memory_size=30, memory_strategy=strategy, random_state=0)
    for s in range(0, 300, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    twin = copy.deepcopy(clf)
    before = snapshot(clf)
    memory = clf.learner_.memory
    held, offer = memory.X.clone(), memory.offer
    replaced = []

    def offer_then_fail(*args, **kwargs):
        offer(*args, **kwargs)
        replaced.append(len(memory.X) == len(held) and not torch.equal(memory.X, held))
        raise KeyboardInterrupt

    monkeypatch.setattr(memory, "offer", offer_then_fail)
    with pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X[300:500], y[300:500])
    monkeypatch.undo()
    assert replaced == [True]  # the offer wrote over rows before the failure
    assert_unchanged(clf, before)
    for s in range(300, 700, 200):
        clf.partial_fit(X[s : s + 200], y[s : s + 200])
        twin.partial_fit(X[s : s + 200], y[s : s + 200])
    assert_same_state(state(twin), state(clf))
    assert_same_tree(twin.learner_.state_dict(), clf.learner_.state_dict())


# --------------------------------------------------------------------------- 4. NaN outputs
def test_an_update_with_non_finite_outputs_is_undone(stream):
    X, y = stream
    clf = OnlineFineTuneClassifier(optimizer="sgd", max_iter=3, random_state=0)
    clf.fit(X[:300], y[:300])
    clf.set_params(trunk_lr=1e6, head_lr=1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteStepWarning)
        for s in range(300, 600, 100):
            clf.partial_fit(X[s : s + 100], y[s : s + 100])
            proba = clf.predict_proba(X[s : s + 100])  # the rows it learned from
            assert np.isfinite(proba).all()
            np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert clf.n_skipped_steps_ > 0


def test_a_strong_pull_cannot_give_nan_probabilities(stream):
    X, y = stream
    clf = OnlineFineTuneClassifier(regularization="l2sp", reg_strength=1e38, max_iter=3)
    clf.fit(X[:300], y[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteStepWarning)
        for s in range(300, 600, 100):
            clf.partial_fit(X[s : s + 100], y[s : s + 100])
            assert np.isfinite(clf.predict_proba(X[s : s + 100])).all()


def test_an_input_whose_logits_overflow_is_an_error_naming_the_row(stream):
    X, y = stream
    clf = OnlineFineTuneClassifier(max_iter=3, random_state=0).fit(X[:300], y[:300])
    bad = X[:5].copy()
    bad[3] = 3e38
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(ValueError, match="row 3 gives logits that are not finite"):
            method(bad)
    # Learning from it: the steps it breaks are skipped, the update is undone, and its
    # rows do not enter the replay memory.
    memory = clf.learner_.memory.X.clone()
    weights = state(clf)
    with pytest.warns(NonFiniteStepWarning):
        clf.partial_fit(bad, y[:5])
    assert_same_state(weights, state(clf))
    assert torch.equal(memory, clf.learner_.memory.X)


# --------------------------------------------------------------------------- 5. fit stops
def test_undone_epochs_count_as_no_improvement(stream):
    X, y = stream
    clf = OnlineFineTuneClassifier(lr=1e30, optimizer="sgd", n_iter_no_change=5, random_state=0)
    with pytest.warns(NonFiniteStepWarning):
        clf.fit(X[:300], y[:300])
    assert clf.n_iter_ <= 7  # not max_iter
    assert np.isfinite(clf.predict_proba(X[:10])).all()


# --------------------------------------------------------------------------- steps
@pytest.mark.parametrize(
    "name, kwargs",
    [("adam", {}), ("adam", {"weight_decay": 0.1}), ("adamw", {"weight_decay": 0.1})],
)
def test_a_step_through_the_fused_kernel_is_the_optimizers_step(name, kwargs):
    from skocl._modules import make_optimizer
    from skocl._steps import apply_step

    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(5))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    opt_a = make_optimizer(name, a, 1e-2, kwargs.get("weight_decay", 0.0))
    opt_b = make_optimizer(name, b, 1e-2, kwargs.get("weight_decay", 0.0))
    for _ in range(4):
        grads = [torch.randn_like(p) for p in a]
        assert apply_step(opt_a, a, grads)  # the kernel straight, from the second step
        for p, g in zip(b, grads):
            p.grad = g.clone()
        opt_b.step()
        for p, q in zip(a, b):
            assert torch.equal(p, q)
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(opt_a.state[p][key], opt_b.state[q][key])


def test_a_resolved_fused_step_is_the_optimizers_step():
    """FusedAdam resolved once (as the loops of a call do) steps as optimizer.step()."""
    from skocl._modules import make_optimizer
    from skocl._steps import FusedAdam, apply_step

    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(5))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    opt_a, opt_b = make_optimizer("adam", a, 1e-2, 0.0), make_optimizer("adam", b, 1e-2, 0.0)
    assert FusedAdam.of(opt_a, a) is None  # no state before the first step
    for step in range(4):
        fused = FusedAdam.of(opt_a, a)
        assert (fused is None) == (step == 0)
        grads = [torch.randn_like(p) for p in a]
        assert apply_step(opt_a, a, grads, fused=fused)
        for p, g in zip(b, grads):
            p.grad = g.clone()
        opt_b.step()
        for p, q in zip(a, b):
            assert torch.equal(p, q)
            assert torch.equal(opt_a.state[p]["exp_avg_sq"], opt_b.state[q]["exp_avg_sq"])
    assert FusedAdam.of(make_optimizer("sgd", a, 1e-2, 0.0), a) is None


def test_fused_steps_share_one_count_and_mix_with_the_optimizers_own():
    """FusedAdam advances every parameter's step count in one operation (the counts are
    views of one tensor): mixed with optimizer.step(), and after a state_dict round
    trip, the weights and counts stay those of optimizer.step() alone."""
    from skocl._modules import make_optimizer
    from skocl._steps import FusedAdam, apply_step

    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(5))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    opt_a, opt_b = make_optimizer("adam", a, 1e-2, 0.0), make_optimizer("adam", b, 1e-2, 0.0)
    saved = None
    for step in range(6):
        grads = [torch.randn_like(p) for p in a]
        if step == 4:  # a fresh optimizer from the saved state
            opt_a = make_optimizer("adam", a, 1e-2, 0.0)
            opt_a.load_state_dict(saved)
        if step in (2, 5):  # the optimizer's own step
            for p, g in zip(a, grads):
                p.grad = g.clone()
            opt_a.step()
        else:
            assert apply_step(opt_a, a, grads, fused=FusedAdam.of(opt_a, a))
        for p, g in zip(b, grads):
            p.grad = g.clone()
        opt_b.step()
        saved = copy.deepcopy(opt_a.state_dict())
        for p, q in zip(a, b):
            assert torch.equal(p, q)
            assert float(opt_a.state[p]["step"]) == float(opt_b.state[q]["step"]) == step + 1


@pytest.mark.parametrize("resolved", [False, True])
def test_a_transposed_gradient_steps_as_its_contiguous_copy(resolved):
    """torch's fused CPU Adam misreads a gradient laid out unlike its parameter;
    apply_step hands it a contiguous one (the closed-form gradients of large batches
    are made transposed)."""
    from skocl._modules import make_optimizer
    from skocl._steps import FusedAdam, apply_step

    torch.manual_seed(0)
    a = [nn.Parameter(torch.randn(6, 4))]
    b = [nn.Parameter(a[0].detach().clone())]
    start = a[0].detach().clone()
    opt_a, opt_b = make_optimizer("adam", a, 1e-2, 0.0), make_optimizer("adam", b, 1e-2, 0.0)
    for _ in range(3):
        g = torch.randn(4, 6)
        fused = FusedAdam.of(opt_a, a) if resolved else None
        assert apply_step(opt_a, a, [g.t()], fused=fused)
        assert apply_step(opt_b, b, [g.t().contiguous()])
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0].detach(), start)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_all_finite_finds_any_bad_value_and_changes_nothing(dtype, bad):
    from skocl._steps import all_finite

    torch.manual_seed(0)
    tensors = [torch.randn(7, 3, dtype=dtype), torch.randn(3, dtype=dtype) * 1e-40]
    tensors.append(torch.tensor([3e38], dtype=dtype))
    before = [t.clone() for t in tensors]
    assert all_finite(tensors)
    assert all(torch.equal(t, u) for t, u in zip(tensors, before))  # bit for bit
    for i in range(len(tensors)):
        broken = [t.clone() for t in tensors]
        broken[i].view(-1)[-1] = bad
        assert not all_finite(broken)
    sparse = torch.sparse_coo_tensor(
        [[0, 2]], torch.tensor([1.0, bad]), (4,), check_invariants=True
    )
    assert not all_finite([sparse, torch.ones(2)])
    assert all_finite(
        [torch.sparse_coo_tensor([[1]], torch.tensor([2.0]), (4,), check_invariants=True)]
    )


def test_all_finite_answers_each_check_afresh(monkeypatch):
    """all_finite keeps its flag tensor between checks: a check that found a bad value,
    or one interrupted after the kernel set the flag, must not fail the next ones."""
    from skocl._steps import all_finite

    for _ in range(2):
        assert not all_finite([torch.ones(3), torch.tensor([float("nan")])])
        assert all_finite([torch.ones(3), torch.zeros(2)])

    def interrupted(tensors, found, inv_scale):
        found.fill_(1.0)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "_amp_foreach_non_finite_check_and_unscale_", interrupted)
    with pytest.raises(KeyboardInterrupt):
        all_finite([torch.ones(2)])
    monkeypatch.undo()
    assert all_finite([torch.ones(2)])
    # Each thread has its own flag: one thread's bad value is not another's.
    results = []

    def check(values):
        results.append(all([all_finite([torch.tensor(values)]) for _ in range(200)]))

    threads = [threading.Thread(target=check, args=(v,)) for v in ([1.0], [float("inf")], [2.0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True, True]


def test_a_step_hook_still_runs():
    from skocl._modules import make_optimizer
    from skocl._steps import apply_step

    params = [nn.Parameter(torch.zeros(3))]
    opt = make_optimizer("adam", params, 1e-2, 0.0)
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    for _ in range(3):
        apply_step(opt, params, [torch.ones(3)])
    assert calls == [1, 1, 1]


def test_a_parameter_set_between_calls_is_checked_again(stream):
    # scikit-learn's fit wrapper checks the parameters at the first partial_fit only.
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = stream
    clf = OnlineFineTuneClassifier(max_iter=3, random_state=0).fit(X[:300], y[:300])
    clf.partial_fit(X[300:400], y[300:400])
    for name, bad in [("head_lr", -1.0), ("memory_strategy", "newest"), ("batch_size", 0)]:
        good = clf.get_params()[name]
        clf.set_params(**{name: bad})
        before = snapshot(clf)
        with pytest.raises(InvalidParameterError, match=name):
            clf.partial_fit(X[400:500], y[400:500])
        clf.set_params(**{name: good})
        assert_unchanged(clf, before)
    assert clf.partial_fit(X[400:500], y[400:500]).n_samples_seen_ == 500


def test_a_call_that_fails_after_its_loss_was_recorded_leaves_the_curve(stream):
    """The skipped-step warning comes after the call's loss joined ``loss_curve_``:
    turned into an error, the call fails and the curve is as it was (the same list,
    its length put back), with every other attribute."""
    X, y = stream
    clf = OnlineFineTuneClassifier(random_state=0)
    for s in range(0, 300, 100):
        clf.partial_fit(X[s : s + 100], y[s : s + 100])
    curve = clf.loss_curve_
    before = snapshot(clf)
    bad = X[300:310].copy()
    bad[3] = 3e38  # its steps overflow: skipped, with a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteStepWarning)
        with pytest.raises(NonFiniteStepWarning):
            clf.partial_fit(bad, y[300:310])
    assert clf.loss_curve_ is curve and len(curve) == 3
    assert_unchanged(clf, before)
    clf.partial_fit(X[300:400], y[300:400])  # and it goes on
    assert len(clf.loss_curve_) == 4


@pytest.mark.parametrize("bound_rows", [0, 512])  # the bound always; never for 4 rows
def test_the_check_of_a_linear_heads_outputs_matches_their_forward(monkeypatch, bound_rows):
    """Transaction.finite bounds a linear head's outputs by its features' extremes
    (from _BOUND_ROWS rows) and runs the head only when the bound is not small: the
    answer is the forward's."""
    from skocl import _steps
    from skocl._steps import Transaction

    monkeypatch.setattr(_steps, "_BOUND_ROWS", bound_rows)

    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1e2, 0.0, 1.0], [-5.0, 0.0, 2.0]]))
    txn = Transaction(list(head.parameters()), [])
    big_where_unused = torch.tensor([[1.0, 1e37, 2.0], [0.5, -1e37, 1.0]])
    cases = {
        "plain": (torch.randn(4, 3), True),
        "bound overflows, outputs do not": (big_where_unused, True),
        "outputs overflow": (torch.tensor([[1e37, 0.0, 0.0]]), False),
        "a NaN feature": (torch.tensor([[1.0, float("nan"), 0.0]]), False),
        "an infinite feature": (torch.tensor([[1.0, 0.0, -float("inf")]]), False),
    }
    for name, (feats, finite) in cases.items():
        with torch.no_grad():
            assert bool(torch.isfinite(head(feats)).all()) == finite, name
        assert txn.finite(head, feats) == finite, name
    with torch.no_grad():
        head.bias.fill_(float("nan"))
    assert not txn.finite(head, torch.randn(4, 3))
    # Each value is checked, not a sum: weights and outputs near float32's largest
    # value are finite, though their sums are not.
    big = nn.Linear(1, 2)
    with torch.no_grad():
        big.weight.fill_(3e38)
        big.bias.zero_()
    assert Transaction(list(big.parameters()), []).finite(big, torch.ones(3, 1))
    assert Transaction(list(big.parameters()), []).finite()
