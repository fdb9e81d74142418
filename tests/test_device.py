"""Device placement: what lives on the accelerator and what crosses to it.

Each test runs on two devices: ``"simulated"``, CUDA's placement rules enforced on the
CPU (``tests/_simulated_device.py``; it runs everywhere), and ``"cuda"``, a real GPU
(skipped without one). The simulation checks where tensors live and counts the bytes
that cross; only the real GPU checks CUDA's kernels and random generators.
"""

import contextlib

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _simulated_device import DEVICE, simulated_device
from _simulated_device import on_device as on_simulated_device
from sklearn.datasets import make_classification
from torch import nn

import skocl
from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream

# Continual learning on: replay memory, EWC anchor and Fisher, EMA fusion.
PARAMS = dict(
    hidden_layer_sizes=(64,),
    max_iter=3,
    memory_size=300,
    regularization="ewc",
    fusion="ema",
    drift_detector=None,
    random_state=0,
)


@pytest.fixture(params=["simulated", "cuda"])
def device(request):
    """``(name, context, is_on_device)`` for the device under test."""
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")
        yield "cuda", contextlib.nullcontext, lambda t: t.is_cuda
    else:
        yield str(DEVICE), simulated_device, on_simulated_device


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(
        n_samples=900, n_features=12, n_informative=8, n_classes=4, random_state=0
    )
    return X.astype(np.float32), y


def assert_matches_cpu(name, proba, cpu_proba, y):
    """The simulation runs the CPU's kernels on the same random streams: equal results.
    A GPU rounds float32 sums differently and draws dropout from its own generator:
    the same predictions, nearly everywhere, and the same accuracy, within noise."""
    if name == str(DEVICE):
        np.testing.assert_array_equal(proba, cpu_proba)
        return
    assert np.mean(proba.argmax(1) == cpu_proba.argmax(1)) >= 0.9
    accuracy, cpu_accuracy = (np.mean(p.argmax(1) == y) for p in (proba, cpu_proba))
    assert abs(accuracy - cpu_accuracy) <= 0.05


def stream(clf, X, y):
    """fit on classes 0-2, then partial_fit three chunks, which bring class 3."""
    seen = y[:500] < 3
    clf.fit(X[:500][seen], y[:500][seen])
    for start in (500, 600, 700):
        clf.partial_fit(X[start : start + 100], y[start : start + 100])
    return clf


def test_simulation_enforces_cuda_placement_rules():
    """The simulated device fails where CUDA fails, and counts what crosses."""
    host = torch.arange(6.0).reshape(2, 3)
    with simulated_device() as ledger:
        dev = host.to(DEVICE)
        assert on_simulated_device(dev) and ledger.h2d_bytes == host.nbytes
        dev.mul_(2)
        assert torch.equal(host, torch.arange(6.0).reshape(2, 3))  # a copy, not a view
        with pytest.raises(RuntimeError, match="same device"):
            dev + host
        with pytest.raises(RuntimeError, match="indices on the device"):
            host[torch.tensor([1], device=DEVICE)]
        with pytest.raises(RuntimeError, match="not supported"):
            dev.numpy()
        assert torch.equal(dev[torch.tensor([1])].cpu(), 2 * host[1:])  # host indices: fine
        assert torch.equal((dev + torch.tensor(1.0)).cpu(), 2 * host + 1)  # a host scalar
        assert ledger.d2h_bytes == host[1:].nbytes + host.nbytes
        with pytest.raises(RuntimeError, match="same device"):
            torch.nn.Linear(3, 2)(dev)  # weights left on the host


def test_training_on_device_keeps_every_state_there_and_matches_cpu(device, data):
    name, context, is_on_device = device
    X, y = data
    with context():
        clf = stream(OnlineFineTuneClassifier(device=name, **PARAMS), X, y)
        proba = clf.predict_proba(X)
        states = {
            "module": list(clf.module_.parameters()),
            "optimizers": [
                v
                for opt in (clf.learner_.trunk_optimizer, clf.learner_.head_optimizer)
                for state in opt.state.values()
                for v in state.values()
                if isinstance(v, torch.Tensor) and v.dim() > 0
            ],
            "replay memory": [clf.learner_.memory.X, clf.learner_.memory.y],
            "EWC anchor": clf.learner_.anchor.trunk + clf.learner_.anchor.fisher,
            "EMA weights": [p for part in clf.learner_.served for p in part.parameters()],
        }
        remembered = torch.unique(clf.learner_.memory.y).tolist()
    for what, tensors in states.items():
        assert tensors and all(is_on_device(t) for t in tensors), what
    assert len(clf.classes_) == 4 and remembered == [0, 1, 2, 3]

    cpu = stream(OnlineFineTuneClassifier(device="cpu", **PARAMS), X, y).predict_proba(X)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(X), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert_matches_cpu(name, proba, cpu, y)


@pytest.mark.parametrize(
    "options",
    [
        dict(regularization="l2sp", fusion="wise", memory_strategy="reservoir"),
        dict(early_stopping=True, dropout=0.2, optimizer="sgd"),
        dict(dtype="float64", classes=[0, 1, 2, 3], memory_size=0),
        dict(sparse=True, sample_weight=True, dense_module=True),
        dict(sparse=True, sample_weight=True),
        dict(drift_detector="auto", max_iter=60),
    ],
    ids=[
        "l2sp-wise-reservoir",
        "early-stopping-dropout-sgd",
        "float64-fixed",
        "sparse-densified-weighted",
        "sparse-layer-weighted",
        "drift",
    ],
)
def test_device_matches_cpu_across_options(device, options):
    """Every option that keeps state (or draws random numbers) on the device."""
    name, context, _ = device
    options = dict(options)
    sparse, weighted = options.pop("sparse", False), options.pop("sample_weight", False)
    if options.pop("dense_module", False):
        # A module that does not take sparse rows: they are densified a batch at a time.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            options["module"] = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 4))
    elif sparse and name == str(DEVICE):
        pytest.skip(
            "the simulated device has no sparse layout (a sparse first layer's row-sparse "
            "gradients); a CUDA GPU runs this case"
        )
    if options.get("drift_detector") == "auto":
        pytest.importorskip("river")
    X, y, _ = make_drift_stream(1500, 10, 4, drift_points=(0.5,), random_state=0)
    y[750:] = (y[750:] + 1) % 4  # and the labels rotate: a drift ADWIN cannot miss
    X = sp.csr_matrix(X) if sparse else X.astype(np.float32)
    w = np.linspace(0.5, 1.5, len(y)) if weighted else None

    def run(device_name):
        clf = OnlineFineTuneClassifier(device=device_name, **{**PARAMS, **options})
        clf.fit(X[:400], y[:400], sample_weight=None if w is None else w[:400])
        for s in range(400, 1500, 220):
            sl = slice(s, s + 220)
            clf.partial_fit(X[sl], y[sl], sample_weight=None if w is None else w[sl])
        return clf.predict_proba(X), clf.drifts_

    with context():
        proba, drifts = run(name)
    cpu_proba, cpu_drifts = run("cpu")
    if options.get("drift_detector"):
        assert cpu_drifts, "the stream's drift should be detected (and reacted to)"
    assert_matches_cpu(name, proba, cpu_proba, y)
    if name == str(DEVICE):
        assert drifts == cpu_drifts


@pytest.mark.parametrize("drift_detector", [None, "auto"])
def test_only_the_rows_in_use_cross_to_the_device(data, drift_detector):
    """partial_fit copies the chunk's rows across once (labels and a few indices
    besides), also when drift detection predicts the chunk first; the network, the
    optimizers and the replay memory stay put, and what comes back is scalars (and
    the predicted labels, for drift detection). predict copies X across and the
    probabilities back."""
    if drift_detector:
        pytest.importorskip("river")
    X, y = data
    n, width = 64, 512  # network and memory far larger than a chunk
    params = {**PARAMS, "hidden_layer_sizes": (width,), "drift_detector": drift_detector}
    with simulated_device() as ledger:
        clf = OnlineFineTuneClassifier(device=str(DEVICE), **params).fit(X[:500], y[:500])
        network = sum(p.nbytes for p in clf.module_.parameters())
        memory = clf.learner_.memory.X.nbytes
        chunk = X[500 : 500 + n]
        ledger.reset()
        clf.partial_fit(chunk, y[500 : 500 + n])
        # Labels (8 bytes a row), mini-batch order and replay draws (8 bytes each) and
        # the memory's slot indices add at most 6 int64 per row.
        assert chunk.nbytes <= ledger.h2d_bytes <= chunk.nbytes + 6 * 8 * n
        assert ledger.h2d_bytes < min(network, memory)
        predicted = 8 * n if drift_detector else 0
        assert ledger.d2h_bytes <= predicted + 8 * 16  # and per-class counts, not rows
        ledger.reset()
        proba = clf.predict_proba(X)
    assert ledger.h2d_bytes == X.nbytes
    assert ledger.d2h_bytes == proba.nbytes


def test_device_model_saves_and_loads_on_the_cpu(device, data, tmp_path):
    name, context, _ = device
    X, y = data
    path = tmp_path / "model.skocl"
    with context():
        clf = stream(OnlineFineTuneClassifier(device=name, **PARAMS), X, y)
        expected = clf.predict_proba(X)
        skocl.save(clf, path)
    loaded = skocl.load(path, device="cpu")
    assert next(loaded.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-5)
    # It goes on learning where it left off: memory and optimizer state came along.
    assert len(loaded.learner_.memory) == len(clf.learner_.memory)
    loaded.partial_fit(X[800:], y[800:])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_model_saved_for_cuda_loads_on_a_machine_without_it(data, tmp_path):
    """``load(device=None)`` keeps the saved device when it exists, the CPU otherwise."""
    X, y = data
    clf = OnlineFineTuneClassifier(**PARAMS).fit(X, y)
    clf.device = "cuda"  # as if trained on a GPU (its state is saved as CPU tensors)
    skocl.save(clf, tmp_path / "model.skocl")
    loaded = skocl.load(tmp_path / "model.skocl")
    assert loaded.device == "cpu" and loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_several_tasks_on_device_keep_their_state_there_and_match_cpu(device, data):
    """Heads per task, missing labels, task-balanced replay, a task added mid-stream."""
    name, context, is_on_device = device
    X, y = data
    Y = np.column_stack([y, y % 2, (X[:, 0] > 0).astype(int)]).astype(float)
    Y[::3, 1] = np.nan

    def run(device_name):
        params = {**PARAMS, "regularization": "l2sp", "drift_detector": "auto"}
        clf = OnlineFineTuneClassifier(device=device_name, **params)
        clf.fit(X[:400], Y[:400, :2])
        for start in range(400, 800, 100):  # the third task arrives with this stream
            clf.partial_fit(X[start : start + 100], Y[start : start + 100])
        return clf

    pytest.importorskip("river")
    with context():
        clf = run(name)
        probas = clf.predict_proba(X)
        states = [
            *clf.module_.parameters(),
            *(p for part in clf.learner_.served for p in part.parameters()),
            clf.learner_.memory.X,
            clf.learner_.memory.y,
            *clf.learner_.anchor.head,
        ]
    assert len(clf.classes_) == 3 and all(is_on_device(t) for t in states)
    cpu = run("cpu").predict_proba(X)
    for proba, cpu_proba, labels in zip(probas, cpu, (y, y % 2, (X[:, 0] > 0).astype(int))):
        assert_matches_cpu(name, proba, cpu_proba, labels)


def test_head_rates_live_on_the_device_and_match_cpu(device, data):
    """After a fit that converges, the head's copies at several rates (HeadRates)."""
    name, context, is_on_device = device
    X, y = data
    params = dict(hidden_layer_sizes=(32,), max_iter=300, tol=1e-2, random_state=0)

    def run(device_name):
        clf = OnlineFineTuneClassifier(device=device_name, **params).fit(X[:400], y[:400])
        for start in range(400, 900, 100):
            clf.partial_fit(X[start : start + 100], y[start : start + 100])
        return clf

    with context():
        clf = run(name)
        proba = clf.predict_proba(X)
        rates = clf.learner_.rates
        lda = rates.lda  # the closed-form candidate
        copies = [rates.weight, rates.bias, *rates.moments, lda.counts, lda.sums, lda.scatter]
        copies += [lda.weight, lda.bias]
    assert not rates.off and rates.scored == 5
    assert all(is_on_device(t) for t in copies)
    cpu = run("cpu")
    assert_matches_cpu(name, proba, cpu.predict_proba(X), y)
    if name == str(DEVICE):
        np.testing.assert_equal(clf.head_lr_, cpu.head_lr_)  # nan while "lda" serves


def test_a_fresh_head_lives_on_the_device_and_matches_cpu(device):
    """A concept switch: the neighbour test on the replay memory and a fresh head that
    learns, is scored and takes over, all on the device."""
    name, context, is_on_device = device
    X, y = make_classification(
        3000, 10, n_informative=6, n_classes=3, n_clusters_per_class=1, random_state=0
    )
    X, y = X.astype(np.float32), np.where(np.arange(3000) >= 1500, (y + 1) % 3, y)
    fresh_tensors = []

    def run(device_name, watch=False):
        clf = OnlineFineTuneClassifier(
            hidden_layer_sizes=(32,), device=device_name, random_state=0
        )
        clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
        for start in range(100, 3000, 100):
            clf.partial_fit(X[start : start + 100], y[start : start + 100])
            fresh = clf.learner_.fresh
            if watch and fresh.active:
                fresh_tensors.extend([fresh.weight, fresh.bias, *fresh.moments])
        return clf

    with context():
        clf = run(name, watch=True)
        proba = clf.predict_proba(X)
        # The neighbour test on the device's memory (host rows in): the labels moved.
        memory = clf.learner_.memory
        assert memory._contradicted(X[2900:], (y[2900:] + 1) % 3)
        assert not memory._contradicted(X[2900:], y[2900:])
    assert clf.fresh_heads_ >= 1 and fresh_tensors
    assert all(is_on_device(t) for t in fresh_tensors)
    cpu = run("cpu")
    assert cpu.fresh_heads_ == clf.fresh_heads_ or name == "cuda"
    assert_matches_cpu(name, proba, cpu.predict_proba(X), y)
