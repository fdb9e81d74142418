"""Sparse input to the estimator stays sparse: the default network's sparse first layer,
lazy row updates, the sparse replay memory, row-wise checkpoints, persistence."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _util import assert_same_state, assert_same_tree, state
from torch import nn

import skocl
from skocl import OnlineFineTuneClassifier
from skocl.exceptions import NonFiniteStepWarning
from skocl.sparse import LazyAdam, SparseLinear, SparseRows

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_FEATURES = 5000


def bag_of_words(n_docs, n_features=N_FEATURES, n_classes=3, seed=0):
    """Documents of 5 to 30 words; each class draws most words from its own block of
    the vocabulary, so the label is learnable from a few hundred documents."""
    rng = np.random.RandomState(seed)
    y = rng.randint(n_classes, size=n_docs)
    block = n_features // n_classes
    rows, cols = [], []
    for i, c in enumerate(y):
        n = rng.randint(5, 31)
        own = rng.rand(n) < 0.6
        words = np.where(
            own, c * block + rng.randint(block, size=n), rng.randint(n_features, size=n)
        )
        rows += [i] * n
        cols += list(words)
    X = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_docs, n_features))
    X.sum_duplicates()
    X = sp.csr_matrix(X.multiply(1 / np.sqrt(X.multiply(X).sum(1))))
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def docs():
    return bag_of_words(1600)


def fitted_stream(X, y, **params):
    clf = OnlineFineTuneClassifier(random_state=0, **params)
    for s in range(0, 800, 200):
        clf.partial_fit(X[s : s + 200], y[s : s + 200], classes=[0, 1, 2])
    return clf


def test_the_default_network_reads_sparse_rows(docs):
    X, y = docs
    clf = fitted_stream(X, y)
    first = clf.module_.trunk[0]
    assert isinstance(first, SparseLinear)
    assert (first.n_features, first.width) == (N_FEATURES, 32)  # hidden_layer_sizes="auto"
    assert isinstance(clf.learner_.trunk_optimizer, LazyAdam)
    memory = clf.learner_.memory  # every row so far, kept as CSR rows
    assert isinstance(memory.rows, SparseRows)
    assert len(memory) == 800 and memory.rows.nnz == X[:800].nnz
    assert clf.score(X[800:], y[800:]) > 0.85  # 0.889 at width 32 (0.9+ at 64)
    proba = clf.predict_proba(X[800:])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    # Dense input of the same rows gives the same predictions.
    np.testing.assert_allclose(clf.predict_proba(X[800:900].toarray()), proba[:100], atol=1e-6)


def test_dense_input_keeps_the_dense_network(docs):
    X, y = docs
    clf = OnlineFineTuneClassifier(max_iter=5, random_state=0).fit(X[:200].toarray(), y[:200])
    assert isinstance(clf.module_.trunk[0], nn.Linear)
    assert clf.module_.trunk[0].out_features == 256
    assert not clf.learner_.sparse


def test_refitting_on_the_other_input_kind_takes_its_own_auto_rate(docs):
    # The settings of one call are reused by the next while no parameter changed: a
    # refit on sparse input after dense (and back) must still take its own "auto" rate.
    X, y = docs
    clf = OnlineFineTuneClassifier(max_iter=2, random_state=0)
    rates = []
    for rows in (X[:200].toarray(), X[:200], X[:200].toarray()):
        clf.fit(rows, y[:200]).partial_fit(rows[:50], y[:50])
        rates.append((clf.learner_.sparse, clf.learner_.trunk_optimizer.param_groups[0]["lr"]))
    assert rates == [(False, 1e-3), (True, 5e-2), (False, 1e-3)]


def test_rows_of_words_a_chunk_lacks_are_left_bit_identical(docs):
    X, y = docs
    clf = fitted_stream(X, y, memory_size=0)
    before = clf.module_.trunk[0].weight.detach().clone()
    moments = clf.learner_.trunk_optimizer.state[clf.module_.trunk[0].weight]["moments"].clone()
    chunk = X[800:900]
    clf.partial_fit(chunk, y[800:900])
    after = clf.module_.trunk[0].weight.detach()
    touched = np.zeros(N_FEATURES, dtype=bool)
    touched[chunk.indices] = True
    assert torch.equal(after[~touched], before[~touched])
    assert not torch.equal(after[touched], before[touched])
    state_now = clf.learner_.trunk_optimizer.state[clf.module_.trunk[0].weight]["moments"]
    assert torch.equal(state_now[~touched], moments[~touched])


class FailingDetector:
    """A river-style drift detector that raises on its ``fail_at``-th update."""

    def __init__(self, fail_at=None):
        self.fail_at, self.calls, self.drift_detected = fail_at, 0, False

    def update(self, x):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("the detector failed")

    def clone(self):
        return copy.deepcopy(self)


def test_a_failed_call_leaves_a_sparse_model_as_it_was(docs):
    X, y = docs
    params = dict(drift_detector=FailingDetector(), memory_size=300)
    clf, twin = fitted_stream(X, y, **params), fitted_stream(X, y, **params)
    before = (state(clf), copy.deepcopy(clf.learner_.state_dict()))
    clf.learner_.drift.detector.fail_at = clf.learner_.drift.detector.calls + 150
    with pytest.raises(RuntimeError, match="detector failed"):
        clf.partial_fit(X[800:1000], y[800:1000])
    assert_same_state(before[0], state(clf))
    assert_same_tree(before[1], clf.learner_.state_dict())
    # It goes on exactly as a model that never saw the failed call.
    clf.learner_.drift.detector.fail_at = None
    for model in (clf, twin):
        model.partial_fit(X[1000:1200], y[1000:1200])
    assert_same_state(state(twin), state(clf))
    assert_same_tree(twin.learner_.state_dict(), clf.learner_.state_dict())


def test_a_call_that_fails_after_a_full_memory_kept_rows_puts_them_back(docs, monkeypatch):
    # The sparse memory's selection writes the handles it keeps over others in place.
    X, y = docs
    clf, twin = fitted_stream(X, y, memory_size=100), fitted_stream(X, y, memory_size=100)
    before = (state(clf), copy.deepcopy(clf.learner_.state_dict()))
    memory = clf.learner_.memory
    held, offer = memory.ids.clone(), memory.offer
    replaced = []

    def offer_then_fail(*args, **kwargs):
        offer(*args, **kwargs)
        replaced.append(len(memory) == len(held) and not torch.equal(memory.ids, held))
        raise KeyboardInterrupt

    monkeypatch.setattr(memory, "offer", offer_then_fail)
    with pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X[800:1000], y[800:1000])
    monkeypatch.undo()
    assert replaced == [True]
    assert_same_state(before[0], state(clf))
    assert_same_tree(before[1], clf.learner_.state_dict())
    clf.partial_fit(X[800:1000], y[800:1000])
    twin.partial_fit(X[800:1000], y[800:1000])
    assert_same_tree(twin.learner_.state_dict(), clf.learner_.state_dict())


def test_an_update_with_non_finite_weights_is_undone_row_by_row(docs):
    X, y = docs
    clf = fitted_stream(X, y)
    before = state(clf)
    clf.set_params(trunk_lr=1e38, head_lr=1e38)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteStepWarning)
        clf.partial_fit(X[800:1000], y[800:1000])
    assert clf.n_skipped_steps_ > 0
    assert_same_state(before, state(clf))
    assert np.isfinite(clf.predict_proba(X[800:])).all()


@pytest.mark.parametrize(
    "options",
    [
        {"regularization": "l2sp"},
        {"regularization": "ewc"},
        {"fusion": "ema"},
        {"fusion": "wise"},
        {"optimizer": "adamw"},
        {"memory_strategy": "reservoir"},
    ],
    ids=lambda o: "-".join(map(str, o.values())),
)
def test_every_option_learns_from_sparse_input(docs, options):
    X, y = docs
    clf = OnlineFineTuneClassifier(max_iter=30, random_state=0, **options).fit(X[:400], y[:400])
    for s in range(400, 1000, 200):
        clf.partial_fit(X[s : s + 200], y[s : s + 200])
    assert clf.score(X[1000:], y[1000:]) > 0.8


def test_new_classes_mid_stream(docs):
    X, y = docs
    clf = OnlineFineTuneClassifier(random_state=0)
    old = y[:600] < 2
    for s in range(0, 600, 200):
        keep = old[s : s + 200]
        clf.partial_fit(X[s : s + 200][keep], y[s : s + 200][keep])
    assert list(clf.classes_) == [0, 1]
    for s in range(600, 1400, 200):
        clf.partial_fit(X[s : s + 200], y[s : s + 200])
    assert list(clf.classes_) == [0, 1, 2]
    assert clf.score(X[1400:], y[1400:]) > 0.85


def test_save_load_and_exact_resume(docs, tmp_path):
    X, y = docs
    clf = fitted_stream(X, y)
    path = skocl.save(clf, tmp_path / "text.skocl")
    loaded = skocl.load(path)
    assert isinstance(loaded.module_.trunk[0], SparseLinear)
    np.testing.assert_array_equal(loaded.predict_proba(X[800:]), clf.predict_proba(X[800:]))
    for model in (clf, loaded):
        model.partial_fit(X[800:1000], y[800:1000])
    assert_same_state(state(clf), state(loaded))
    assert_same_tree(clf.learner_.state_dict(), loaded.learner_.state_dict())


def test_hashed_text_of_a_million_columns_is_never_densified():
    X, y = bag_of_words(600, n_features=2**20)
    clf = OnlineFineTuneClassifier(random_state=0)
    for s in range(0, 400, 200):
        clf.partial_fit(X[s : s + 200], y[s : s + 200], classes=[0, 1, 2])
    # A dense copy of one chunk would be 200 x 2**20 floats (800 MiB); the memory holds
    # its rows' non-zeros only.
    memory = clf.learner_.memory
    assert len(memory) == 400
    assert memory.nbytes < 1_000_000
    assert clf.predict(X[400:]).shape == (200,)


class Recorded(nn.Module):
    """A trunk that records the type of the batches it is given."""

    def __init__(self, n_features):
        super().__init__()
        self.layer = SparseLinear(n_features, 16)
        self.seen = set()

    def forward(self, x):
        self.seen.add(type(x).__name__)
        return torch.relu(self.layer(x))


class OptIn(nn.Module):
    accepts_sparse = True

    def __init__(self, n_features=N_FEATURES, n_classes=3):
        super().__init__()
        self.trunk = Recorded(n_features)
        self.head = nn.Linear(16, n_classes)


class NoOptIn(OptIn):
    accepts_sparse = False


@pytest.mark.parametrize("net, batches", [(OptIn, {"SparseRows"}), (NoOptIn, {"Tensor"})])
def test_user_modules_opt_in_to_sparse_batches(docs, net, batches):
    X, y = docs
    clf = OnlineFineTuneClassifier(net, random_state=0)
    clf.partial_fit(X[:200], y[:200], classes=[0, 1, 2]).partial_fit(X[200:400], y[200:400])
    assert clf.module_.trunk.seen == batches
    assert clf.learner_.sparse == (net is OptIn)


def _edited(path, tmp_path, edit):
    """A copy of a model file whose meta.json ``edit`` changed."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as src:
        members = {name: src.read(name) for name in src.namelist()}
    meta = json.loads(members["meta.json"])
    edit(meta["classifier"])
    members["meta.json"] = json.dumps(meta).encode()
    out = tmp_path / "edited.skocl"
    with zipfile.ZipFile(out, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    return out


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["params"].update(hidden_layer_sizes=[12000]), "declared sizes"),
        (lambda c: c["attrs"].update(n_features_in_=10**12), "first layer"),
        (lambda c: c["attrs"].update(sparse_input="yes"), "sparse_input"),
        (lambda c: c["attrs"].update(sparse_input=False), "declared sizes"),
    ],
    ids=["hidden sizes", "width", "not a bool", "dense claim"],
)
def test_a_sparse_model_file_that_lies_about_its_shapes_is_refused(docs, tmp_path, edit, match):
    X, y = docs
    path = skocl.save(fitted_stream(X, y), tmp_path / "text.skocl")
    with pytest.raises(skocl.exceptions.ModelFileError, match=match):
        skocl.load(_edited(path, tmp_path, edit))
