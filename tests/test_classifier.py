"""Behaviour of OnlineFineTuneClassifier: the update rule, determinism, inputs, errors."""

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _util import assert_same_state, assert_same_tree, state
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F

from skocl import OnlineFineTuneClassifier
from skocl import _steps as net
from skocl.exceptions import NonFiniteStepWarning

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture
def small():
    X, y = make_classification(
        n_samples=120, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return X, y


def fitted(X, y, **kw):
    kw = {"max_iter": 20, "random_state": 0, **kw}
    return OnlineFineTuneClassifier(**kw).fit(X, y)


# --------------------------------------------------------------------------- predictions
def test_predict_proba_is_a_distribution_and_matches_predict(small):
    X, y = small
    clf = fitted(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (proba >= 0).all()
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(clf.decision_function(X).argmax(1), proba.argmax(1))


@pytest.mark.parametrize("layout", ["C float64", "F float64", "C float32", "read-only"])
def test_predict_is_the_argmax_of_the_served_logits(small, layout):
    """predict (on plain CPU input, straight from the forward pass with numpy) names the
    class of the largest served logit, as decision_function gives them, with a class of
    the fixed label set that no row has shown yet never predicted; input it does not
    take that way (read-only) gets the same labels."""
    X, y = small
    clf = OnlineFineTuneClassifier(random_state=0, classes=[0, 1, 2, 7])
    clf.partial_fit(X, y)  # label 7: no row yet, its logit masked
    Xp = {
        "C float64": X,
        "F float64": np.asfortranarray(X),
        "C float32": X.astype(np.float32),
        "read-only": X.astype(np.float32),  # of the network's dtype: no copy to write
    }[layout]
    Xp.flags.writeable = layout != "read-only"
    z = clf.decision_function(X)
    assert np.isneginf(z[:, 3]).all()
    labels = clf.predict(Xp)
    np.testing.assert_array_equal(labels, clf.classes_[z.argmax(1)])
    assert set(np.unique(labels)) <= {0, 1, 2}
    np.testing.assert_array_equal(labels, clf.predict(X[:1].tolist() + X[1:].tolist()))


def test_binary_decision_function_is_logit_difference():
    X, y = make_classification(n_samples=80, n_features=5, random_state=1)
    clf = fitted(X, y)
    d = clf.decision_function(X)
    assert d.shape == (80,)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(d > 0).astype(int)])


def test_accuracy_floor_on_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = OnlineFineTuneClassifier(random_state=0).fit(X_tr, y_tr)
    assert clf.score(X_te, y_te) > 0.95
    assert clf.n_iter_ == len(clf.loss_curve_)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.n_samples_seen_ == len(X_tr)


# --------------------------------------------------------------------------- update rule
def manual_online_update(module, X, y, trunk_lr, head_lr, head_steps):
    """The documented update, written as a plain torch loop."""
    trunk, head = module.trunk, module.head
    t_opt = torch.optim.Adam(trunk.parameters(), lr=trunk_lr)
    h_opt = torch.optim.Adam(head.parameters(), lr=head_lr)
    x = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y)
    module.train()
    loss = F.cross_entropy(head(trunk(x)), yt)
    t_opt.zero_grad()
    loss.backward()
    t_opt.step()
    module.eval()
    with torch.no_grad():
        z = trunk(x)
    for _ in range(head_steps):
        h_opt.zero_grad()
        F.cross_entropy(head(z), yt).backward()
        h_opt.step()
    return module


def test_partial_fit_is_trunk_step_then_head_fine_tune(small):
    X, y = small
    # The core update: no replay memory (fit would seed it), no drift detection.
    clf = fitted(
        X, y, trunk_lr=1e-2, head_lr=5e-2, head_steps=4, memory_size=0, drift_detector=None,
        head_rates=(1.0,),
    )  # fmt: skip
    expected = manual_online_update(copy.deepcopy(clf.module_), X[:40], y[:40], 1e-2, 5e-2, 4)
    clf.partial_fit(X[:40], y[:40])
    for k, v in expected.state_dict().items():
        torch.testing.assert_close(clf.module_.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_zero_trunk_lr_freezes_trunk_and_head_fine_tune_lowers_chunk_loss(small):
    X, y = small
    clf = fitted(X, y, max_iter=2, trunk_lr=0.0)
    trunk_before = {k: v.clone() for k, v in clf.module_.trunk.state_dict().items()}
    head_before = {k: v.clone() for k, v in clf.module_.head.state_dict().items()}
    loss_before = -np.mean(clf.predict_log_proba(X[:40])[np.arange(40), y[:40]])
    clf.partial_fit(X[:40], y[:40])
    loss_after = -np.mean(clf.predict_log_proba(X[:40])[np.arange(40), y[:40]])
    assert_same_state(trunk_before, clf.module_.trunk.state_dict())
    assert any(
        not torch.equal(v, clf.module_.head.state_dict()[k]) for k, v in head_before.items()
    )
    assert loss_after < loss_before


def test_zero_head_steps_leaves_head_and_moves_trunk(small):
    X, y = small
    clf = fitted(X, y, max_iter=2, head_steps=0)
    head_before = {k: v.clone() for k, v in clf.module_.head.state_dict().items()}
    trunk_before = {k: v.clone() for k, v in clf.module_.trunk.state_dict().items()}
    clf.partial_fit(X[:40], y[:40])
    assert_same_state(head_before, clf.module_.head.state_dict())
    assert not torch.equal(trunk_before["0.weight"], clf.module_.trunk.state_dict()["0.weight"])


def test_closed_form_head_gradient_equals_autograd():
    torch.manual_seed(0)
    head = nn.Linear(6, 4)
    feats, y, w = torch.randn(10, 6), torch.randint(0, 4, (10,)), torch.rand(10)
    twin = copy.deepcopy(head)
    opt_a = torch.optim.SGD(head.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(twin.parameters(), lr=0.1)
    net.fine_tune_head(head, opt_a, list(head.parameters()), feats, y, w, steps=3)
    for _ in range(3):
        opt_b.zero_grad()
        net.weighted_loss(twin(feats), y, w).backward()
        opt_b.step()
    torch.testing.assert_close(head.weight, twin.weight)
    torch.testing.assert_close(head.bias, twin.bias)


def test_optimizer_state_persists_across_partial_fit_calls(small):
    X, y = small
    clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X[:30], y[:30], classes=[0, 1, 2])
    opt = clf.learner_.trunk_optimizer
    steps = [s["step"].item() for s in opt.state.values()]
    clf.partial_fit(X[30:60], y[30:60])
    assert clf.learner_.trunk_optimizer is opt
    assert [s["step"].item() for s in opt.state.values()] == [s + 1 for s in steps]


def test_set_params_learning_rate_takes_effect_between_calls(small):
    X, y = small
    clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X[:30], y[:30], classes=[0, 1, 2])
    before = state(clf)
    clf.set_params(trunk_lr=0.0, head_lr=0.0)
    clf.partial_fit(X[30:60], y[30:60])
    assert_same_state(before, state(clf))


def test_many_partial_fit_calls_approach_fit(digits):
    X_tr, X_te, y_tr, y_te = digits
    full = OnlineFineTuneClassifier(random_state=0).fit(X_tr, y_tr).score(X_te, y_te)
    online = OnlineFineTuneClassifier(random_state=0)
    rng = np.random.RandomState(0)
    for _ in range(8):
        order = rng.permutation(len(X_tr))
        for lo in range(0, len(order), 64):
            idx = order[lo : lo + 64]
            online.partial_fit(X_tr[idx], y_tr[idx], classes=np.arange(10))
    assert online.score(X_te, y_te) > full - 0.03
    assert online.n_samples_seen_ == 8 * len(X_tr)


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_same_seed_gives_bit_identical_fit_and_partial_fit(small, dropout):
    X, y = small

    def run():
        clf = OnlineFineTuneClassifier(max_iter=5, dropout=dropout, random_state=42)
        clf.fit(X[:60], y[:60])
        for lo in range(60, 120, 20):
            clf.partial_fit(X[lo : lo + 20], y[lo : lo + 20])
        return clf

    a, b = run(), run()
    assert_same_state(state(a), state(b))
    assert a.loss_curve_ == b.loss_curve_
    c = OnlineFineTuneClassifier(max_iter=5, dropout=dropout, random_state=7).fit(X[:60], y[:60])
    assert not torch.equal(state(a)["trunk.0.weight"], state(c)["trunk.0.weight"])


def test_global_random_states_are_untouched(small):
    X, y = small
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 - the global state is what must stay untouched
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    clf = OnlineFineTuneClassifier(max_iter=3, dropout=0.2, random_state=None).fit(X, y)
    clf.partial_fit(X[:50], y[:50])
    OnlineFineTuneClassifier(random_state=0, batch_size=16).partial_fit(X, y, classes=[0, 1, 2])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])  # noqa: NPY002


# --------------------------------------------------------------------------- sklearn use
def test_pipeline_gridsearch_and_cross_val_score(small):
    X, y = small
    pipe = make_pipeline(StandardScaler(), OnlineFineTuneClassifier(lr=1e-2, random_state=0))
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.8
    grid = GridSearchCV(
        pipe,
        {
            "onlinefinetuneclassifier__trunk_lr": [1e-3, 1e-2],
            "onlinefinetuneclassifier__head_lr": [1e-2],
            "onlinefinetuneclassifier__hidden_layer_sizes": [(16,), (32, 16)],
        },
        cv=3,
        n_jobs=2,
    )
    grid.fit(X, y)
    assert grid.best_score_ > 0.6
    assert len(grid.cv_results_["params"]) == 4
    scores = cross_val_score(OnlineFineTuneClassifier(lr=1e-2, random_state=0), X, y, cv=3)
    assert scores.mean() > 0.6


def test_clone_get_set_params_after_fit(small):
    X, y = small
    clf = fitted(X, y)
    assert clf.get_params()["trunk_lr"] == "auto"
    clf.set_params(trunk_lr=0.5)
    assert clf.trunk_lr == 0.5
    fresh = clone(clf)
    assert fresh.trunk_lr == 0.5
    assert not hasattr(fresh, "module_")


def test_pickle_round_trip_predicts_and_learns_identically(small):
    X, y = small
    clf = fitted(X, y, dropout=0.1)
    clf.partial_fit(X[:30], y[:30])
    twin = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X[30:60], y[30:60])
    twin.partial_fit(X[30:60], y[30:60])
    assert_same_state(state(clf), state(twin))


# --------------------------------------------------------------------------- inputs
def test_lists_float32_and_labels_of_any_type(small):
    X, y = small
    for labels in (
        np.array(["cat", "dog", "eel"]),
        np.array([True, False, True]),
        np.array([10, -1, 7]),
    ):
        if labels.dtype == bool:
            yy = labels[(y > 0).astype(int)]
        else:
            yy = labels[y]
        clf = fitted(X.astype(np.float32).tolist(), yy.tolist())
        pred = clf.predict(X)
        assert set(pred) <= set(yy)
        assert pred.dtype == np.asarray(yy).dtype
        clf.partial_fit(X[:10].astype(np.float32), yy[:10])


def test_dataframe_feature_names_are_kept_and_checked(small):
    X, y = small
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = fitted(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, df.columns)
    clf.partial_fit(df.iloc[:20], y[:20])
    renamed = df.rename(columns={"f3": "other"})
    before = state(clf)
    with pytest.raises(ValueError, match="other"):
        clf.partial_fit(renamed, y)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(renamed)
    assert_same_state(before, state(clf))


def test_sparse_input_to_a_dense_module_is_densified_one_batch_at_a_time(small, monkeypatch):
    X, y = small
    Xs = sp.csr_matrix(np.where(X > 0.5, X, 0.0))
    seen = []
    original = sp.csr_matrix.toarray

    def spy(self, *args, **kwargs):
        seen.append(self.shape[0])
        return original(self, *args, **kwargs)

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    monkeypatch.setattr(sp.csr_matrix, "toarray", spy)
    clf = fitted(Xs, y, module=net, batch_size=16, max_iter=3)
    clf.partial_fit(Xs, y)
    assert max(seen) <= 16 and len(seen) > 3 * (len(y) // 16)
    monkeypatch.setattr(sp.csr_matrix, "toarray", original)
    dense = fitted(Xs.toarray(), y, module=net, batch_size=16, max_iter=3)
    np.testing.assert_allclose(clf.predict_proba(Xs), clf.predict_proba(Xs.toarray()), rtol=1e-5)
    np.testing.assert_allclose(
        fitted(Xs, y, module=net, batch_size=16, max_iter=3).predict_proba(Xs),
        dense.predict_proba(Xs.toarray()),
        rtol=1e-4,
        atol=1e-6,
    )


def test_the_default_network_never_densifies_sparse_input(small, monkeypatch):
    X, y = small
    Xs = sp.csr_matrix(np.where(X > 0.5, X, 0.0))
    dense = Xs.toarray()

    def refuse(self, *args, **kwargs):
        raise AssertionError("densified")

    monkeypatch.setattr(sp.csr_matrix, "toarray", refuse)
    monkeypatch.setattr(sp.csr_matrix, "todense", refuse)
    clf = fitted(Xs, y, batch_size=16, max_iter=3).partial_fit(Xs, y)
    proba = clf.predict_proba(Xs)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    # The same network on the dense rows gives the same probabilities.
    np.testing.assert_allclose(clf.predict_proba(dense), proba, atol=1e-6)


def test_float64_network(small):
    X, y = small
    clf = fitted(X, y, dtype="float64")
    assert next(clf.module_.parameters()).dtype == torch.float64
    assert clf.predict_proba(X).dtype == np.float64


# --------------------------------------------------------------------------- modules
class UserNet(nn.Module):
    def __init__(self, n_in=8, n_out=3, width=12):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.Tanh())
        self.classifier = nn.Linear(width, n_out)

    def forward(self, x):
        return self.classifier(self.body(x))


def test_user_module_instance_is_copied_not_trained_in_place(small):
    X, y = small
    user = UserNet()
    before = copy.deepcopy(user.state_dict())
    clf = fitted(X, y, module=user, trunk_attr="body", head_attr="classifier", lr=1e-2)
    clf.partial_fit(X[:20], y[:20])
    assert_same_state(before, user.state_dict())
    assert isinstance(clf.module_, UserNet) and clf.module_ is not user
    assert clf.score(X, y) > 0.6


def test_module_class_with_kwargs_and_sequential_split(small):
    X, y = small
    clf = fitted(
        X, y, module=UserNet, module_kwargs={"width": 5}, trunk_attr="body", head_attr="classifier"
    )
    assert clf.module_.classifier.in_features == 5
    seq = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 3))
    clf = fitted(X, y, module=seq)
    assert clf.learner_.head is clf.module_[2]
    clf.partial_fit(X[:20], y[:20])


def test_module_errors_name_what_is_missing(small):
    X, y = small
    with pytest.raises(AttributeError, match="'trunk' or 'head'"):
        fitted(X, y, module=UserNet())
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        fitted(X, y, module=UserNet(n_out=5), trunk_attr="body", head_attr="classifier")
    with pytest.raises(ValueError, match="8 features"):
        fitted(X, y, module=UserNet(n_in=4), trunk_attr="body", head_attr="classifier")
    with pytest.raises(TypeError, match="module must be"):
        fitted(X, y, module="resnet")


def test_skorch_in_and_out(small):
    from skorch import NeuralNetClassifier

    X, y = small
    X32 = X.astype(np.float32)
    module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(dim=-1))
    sk = NeuralNetClassifier(module, max_epochs=5, lr=0.1, train_split=None, verbose=0)
    sk.fit(X32, y)
    # Frozen trunk and no head steps: the pretrained start must predict as skorch does.
    clf = OnlineFineTuneClassifier(sk, trunk_lr=0.0, head_steps=0, random_state=0)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    np.testing.assert_allclose(clf.predict_proba(X), sk.predict_proba(X32), rtol=1e-4, atol=1e-6)
    assert_same_state(sk.module_[0].state_dict(), clf.module_[0].state_dict())

    out = fitted(X, y).to_skorch()
    assert isinstance(out, NeuralNetClassifier)
    ours = fitted(X, y)
    np.testing.assert_allclose(out.predict_proba(X32), ours.predict_proba(X), rtol=1e-5, atol=1e-6)
    out.partial_fit(X32, y)  # skorch can train it further

    with pytest.raises(ValueError, match="not initialized"):
        clone(clf).fit(X, y)


# --------------------------------------------------------------------------- bad input
BAD_CHUNKS = {
    "nan": (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y), "NaN"),
    "inf": (
        lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), y),
        "infinity",
    ),
    "beyond float32": (
        lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 9, 1e300, X), y),
        "row 1, column 1",
    ),
    "n_features": (lambda X, y: (X[:, :-1], y), "7 features"),
    "1-D X": (lambda X, y: (X[:, 0], y), "1D"),
    "empty X": (lambda X, y: (X[:0], y[:0]), "0 sample"),
    "unknown label": (
        lambda X, y: (X, np.where(np.arange(len(y)) == 3, 9, y)),
        "label.*9.* not in classes_",
    ),
    "lengths": (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
    "negative weight": (lambda X, y: (X, y), "(?i)negative"),
}


@pytest.mark.parametrize("case", list(BAD_CHUNKS))
def test_bad_chunk_raises_and_leaves_model_bit_identical(small, case):
    X, y = small
    clf = fitted(X, y, max_iter=3, classes=[0, 1, 2])
    clf.partial_fit(X[:20], y[:20])
    make, match = BAD_CHUNKS[case]
    Xb, yb = make(X[:20].copy(), y[:20].copy())
    sw = -np.ones(len(yb)) if case == "negative weight" else None
    before = state(clf)
    opt_before = pickle.dumps(clf.learner_.trunk_optimizer.state_dict())
    attrs = {
        k: copy.deepcopy(v) for k, v in vars(clf).items() if k.endswith("_") and k != "module_"
    }
    with pytest.raises(ValueError, match=match):
        clf.partial_fit(Xb, yb, sample_weight=sw)
    assert_same_state(before, state(clf))
    assert pickle.dumps(clf.learner_.trunk_optimizer.state_dict()) == opt_before
    for k, v in attrs.items():
        assert k in vars(clf)
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, getattr(clf, k))
        elif k == "learner_":
            assert_same_tree(v.state_dict(), clf.learner_.state_dict())
        else:
            assert v == getattr(clf, k), k


def test_bad_fit_input_raises_and_keeps_previous_model(small):
    X, y = small
    clf = fitted(X, y, max_iter=3)
    before, n_features = state(clf), clf.n_features_in_
    with pytest.raises(ValueError, match="1 class"):
        clf.fit(X[:10, :5], np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.full((10, 4), np.nan), np.arange(10) % 2)
    assert clf.n_features_in_ == n_features
    assert_same_state(before, state(clf))
    fresh = OnlineFineTuneClassifier()
    with pytest.raises(ValueError, match="NaN"):
        fresh.partial_fit(np.full((10, 4), np.nan), np.arange(10) % 2)
    assert not any(k.endswith("_") for k in vars(fresh))


def test_first_partial_fit_checks_labels_against_classes(small):
    X, y = small
    with pytest.raises(ValueError, match="not in classes_"):
        OnlineFineTuneClassifier().partial_fit(X, y, classes=[0, 1])
    clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1, 2])


# --------------------------------------------------------------------------- non-finite
def test_non_finite_steps_are_skipped_counted_and_weights_stay_finite(small):
    X, y = small
    clf = fitted(X, y, max_iter=3)
    before = state(clf)
    huge = np.full((20, X.shape[1]), 3e38)  # finite in float32, overflows in the network
    with pytest.warns(NonFiniteStepWarning, match="skipped"):
        clf.partial_fit(huge, y[:20])
    assert clf.n_skipped_steps_ >= 1 + clf.head_steps
    assert_same_state(before, state(clf))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteStepWarning)
        clf.set_params(trunk_lr=1e30, head_lr=1e30)
        for _ in range(5):
            clf.partial_fit(X * 1e6, y)
    assert all(torch.isfinite(v).all() for v in state(clf).values())


# --------------------------------------------------------------------------- devices
def test_device_auto_and_unavailable_cuda(small):
    X, y = small
    clf = fitted(X, y, device="auto", max_iter=2)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert clf.device_.type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fitted(X, y, device="cuda")
