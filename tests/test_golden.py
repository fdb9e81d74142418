"""Bit-identical behaviour across refactors.

``tests/data/golden.npz`` holds, for a fixed set of configurations and seeds that covers
every option (both memory strategies, L2-SP, EWC, EMA, WiSE-FT, drift reaction, class
growth, a user module, a skorch start, sparse input, float64, sample weights), the
probabilities, weights and counters after ``fit`` and a fixed sequence of ``partial_fit``
calls, recorded before the learner was moved out of the estimator (the sparse scenario
recorded again when sparse input got its sparse first layer, and when the sparse default
width became 32 and the sparse memory took each chunk in one offer; the user-module
scenario, and the new head-rates one, when a trained head got several rates; every
scenario whose drift a fresh head now follows, when ``fresh_head`` came; every
scenario, when the default network's steps took their gradients in closed form, which
moved no counter or prediction and no float by more than 5e-7; again when the head's
copies at several rates took torch's fused Adam kernel, which moved 15 scenarios by at
most 1.2e-7 and no counter or prediction; every scenario whose ``partial_fit`` replays
rows it kept, when ``logit_replay`` became 0.1 by default, with the file's bits
reproduced first at ``logit_replay=0``; every scenario again, unchanged in behaviour,
when the fingerprint came to name the CPU's vendor and the file was recorded on an AMD
CPU). The test replays each scenario and asserts the same bits.

Bit-identity holds for the torch build and CPU kernels the file was recorded with; on
another torch version or CPU capability the test compares to a tight tolerance instead
(the kernels' rounding differs there, not skocl's behaviour).

Record again (only when a behaviour change is intended, and say so in the commit) with
``python tests/test_golden.py``, or only some scenarios with ``python
tests/test_golden.py NAME ...`` (the others keep their recorded bits; the file was
recorded with AVX2 kernels: on an AVX-512 machine set ``ATEN_CPU_CAPABILITY=avx2
MKL_ENABLE_INSTRUCTIONS=AVX2`` to record, and test, at the same bits).
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream

GOLDEN = Path(__file__).parent / "data" / "golden.npz"
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class _UserNet(nn.Module):
    def __init__(self, n_features=8, n_classes=3):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(n_features, 16), nn.Tanh())
        self.head = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.head(self.trunk(x))


def _stream(seed=0, n=1400, n_classes=3):
    X, y, _ = make_drift_stream(
        n, 8, n_classes, drift_points=(0.55,), severity=1.0, random_state=seed
    )
    return X, y


def _skorch_start(X, y):
    from skorch import NeuralNetClassifier

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = NeuralNetClassifier(
            _UserNet(8, len(np.unique(y))), max_epochs=3, lr=0.1, train_split=None, verbose=0
        )
        net.fit(X.astype(np.float32), y)
    return net


BASE = dict(hidden_layer_sizes=(32,), max_iter=5, memory_size=300, random_state=0)

# name -> (estimator parameters, how the stream is fed)
SCENARIOS = {
    "defaults": ({}, "plain"),
    "reservoir": ({"memory_strategy": "reservoir"}, "plain"),
    "no_memory_no_drift": ({"memory_size": 0, "drift_detector": None}, "plain"),
    "l2sp": ({"regularization": "l2sp", "reg_strength": 0.5}, "plain"),
    "ewc": ({"regularization": "ewc", "reg_strength": 0.5}, "plain"),
    "ema": ({"fusion": "ema", "ema_decay": 0.8}, "plain"),
    "wise": ({"fusion": "wise", "wise_alpha": 0.7}, "plain"),
    "drift_ema": ({"fusion": "ema"}, "drift"),
    "growth": ({"fusion": "ema", "regularization": "l2sp"}, "growth"),
    "growth_wise_reservoir": (
        {"fusion": "wise", "memory_strategy": "reservoir", "regularization": "ewc"},
        "growth",
    ),
    "user_module": ({"module": "user", "trunk_lr": 1e-2}, "user"),
    "skorch_start": ({"module": "skorch"}, "skorch"),
    "sparse": ({"dropout": 0.2}, "sparse"),
    "float64": ({"dtype": "float64", "classes": [0, 1, 2], "optimizer": "sgd"}, "plain"),
    "sample_weight": ({"early_stopping": True, "optimizer": "adamw"}, "weights"),
    "head_only": ({"trunk_lr": 0.0, "head_steps": 5, "batch_size": 64}, "plain"),
    # A fit that converges: the head is then fine-tuned at several rates (HeadRates).
    "head_rates": ({"max_iter": 300, "tol": 1e-2}, "plain"),
}


def run_scenario(name):
    params, feed = SCENARIOS[name]
    params = {**BASE, **params}
    X, y = _stream()
    if feed == "drift":
        X, y = _stream(n=3000)
    X_test = X[-200:]
    X, y = X[:-200], y[:-200]
    if params.get("module") == "user":
        with torch.random.fork_rng():
            torch.manual_seed(0)
            params["module"] = _UserNet(8, 3)
    elif params.get("module") == "skorch":
        params["module"] = _skorch_start(X[:300], y[:300])
    clf = OnlineFineTuneClassifier(**params)
    first = 300
    if feed == "growth":
        keep = y < 2
        Xg, yg = X[keep], y[keep]
        clf.fit(Xg[:first], yg[:first])
        X, y = (
            np.concatenate([Xg[first : first + 300], X[first:]]),
            np.concatenate([yg[first : first + 300], y[first:]]),
        )
        start = 0
    elif feed == "user":
        start = 0  # a user's module is the pretrained start: no fit
    else:
        start = first
        if feed == "sparse":
            Xs = sp.csr_matrix(np.where(np.abs(X) > 0.8, X, 0.0))
            clf.fit(Xs[:first], y[:first])
        elif feed == "weights":
            w = np.random.RandomState(1).uniform(0.1, 2.0, len(y))
            clf.fit(X[:first], y[:first], sample_weight=w[:first])
        else:
            clf.fit(X[:first], y[:first])
    chunk = 100
    for s in range(start, len(y), chunk):
        Xc, yc = X[s : s + chunk], y[s : s + chunk]
        if feed == "sparse":
            clf.partial_fit(sp.csr_matrix(np.where(np.abs(Xc) > 0.8, Xc, 0.0)), yc)
        elif feed == "weights":
            clf.partial_fit(Xc, yc, sample_weight=w[s : s + chunk])
        elif feed == "user" and s == 0:
            clf.partial_fit(Xc, yc, classes=[0, 1, 2])
        else:
            clf.partial_fit(Xc, yc)
    if feed == "sparse":
        X_test = sp.csr_matrix(np.where(np.abs(X_test) > 0.8, X_test, 0.0))
    out = {
        "proba": np.asarray(clf.predict_proba(X_test)),
        "classes": np.asarray(clf.classes_),
        "counters": np.array(
            [clf.n_samples_seen_, clf.n_iter_, clf.n_skipped_steps_, len(clf.drifts_)]
        ),
        "drifts": np.asarray(clf.drifts_, dtype=np.int64),
        "loss": np.asarray(clf.loss_curve_, dtype=np.float64),
    }
    for key, value in clf.module_.state_dict().items():
        out[f"w:{key}"] = value.detach().cpu().numpy()
    return out


def _fingerprint():
    """The torch build, its CPU kernels and the CPU's vendor: MKL's kernels at one
    capability round differently on Intel's and AMD's CPUs (1 ulp on a weight)."""
    return f"{torch.__version__}|{torch.backends.cpu.get_cpu_capability()}|{_cpu_vendor()}"


def _cpu_vendor():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record(path=GOLDEN, names=None):
    """Record every scenario, or only ``names`` (the others' arrays kept as they are)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)
    torch.set_num_threads(1)
    arrays = {"_fingerprint": np.array(_fingerprint())}
    if names:
        with np.load(path, allow_pickle=False) as data:
            if str(data["_fingerprint"]) != _fingerprint():
                raise SystemExit("recorded on another torch build or CPU: record them all")
            arrays = {k: data[k] for k in data.files if k.split("/", 1)[0] not in names}
    for name in names or SCENARIOS:
        for key, value in run_scenario(name).items():
            arrays[f"{name}/{key}"] = value
    path.parent.mkdir(exist_ok=True)
    np.savez_compressed(path, **arrays)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    print(f"recorded {len(names or SCENARIOS)} scenarios in {path} ({digest})")


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_bits_as_recorded(name, golden):
    got = run_scenario(name)
    expected = {k.split("/", 1)[1]: v for k, v in golden.items() if k.startswith(name + "/")}
    assert got.keys() == expected.keys()
    exact = str(golden["_fingerprint"]) == _fingerprint()
    for key, want in expected.items():
        have = got[key]
        assert have.shape == want.shape, key
        if exact or have.dtype.kind not in "fc":
            np.testing.assert_array_equal(have, want, err_msg=f"{name}: {key}")
        else:
            np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5, err_msg=key)


if __name__ == "__main__":
    import sys

    record(names=sys.argv[1:])
