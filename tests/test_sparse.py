"""Sparse, wide input: CSR row batches, the sparse first layer, lazy Adam, the sparse
replay memory and the docstring corpus."""

import inspect

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from skocl._continual import ReplayMemory
from skocl._sparse import SparseLinear, SparseRows, csr_rows
from skocl._sparse_optim import LazyAdam
from skocl._sparse_replay import SparseReplayMemory
from skocl.datasets import load_docstrings

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}


def random_csr(n, d, density=0.05, seed=0, dtype=np.float64):
    """Rows with about ``density * d`` non-zeros each in [-1, 1), built directly (scipy's
    sp.random draws from all n * d cells, slow for a million columns)."""
    rng = np.random.RandomState(seed)
    cols = [np.unique(rng.randint(d, size=c)) for c in rng.binomial(d, density, size=n)]
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])])
    indices = np.concatenate(cols + [np.empty(0, int)])
    data = (rng.rand(indptr[-1]) * 2 - 1).astype(dtype)
    return sp.csr_matrix((data, indices, indptr), shape=(n, d))


def with_duplicates_and_empty_rows():
    """A non-canonical CSR: a repeated column in row 0 (the values add up), row 1 empty."""
    indptr = np.array([0, 3, 3, 5])
    indices = np.array([2, 7, 2, 0, 9])
    data = np.array([1.0, -2.0, 0.5, 3.0, 4.0])
    return sp.csr_matrix((data, indices, indptr), shape=(3, 10))


def dense_twin(layer: SparseLinear) -> nn.Linear:
    lin = nn.Linear(layer.n_features, layer.width, dtype=layer.weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(layer.weight.t())
        lin.bias.copy_(layer.bias)
    return lin


# --------------------------------------------------------------------------- rows
def test_csr_rows_takes_rows_without_densifying():
    X = random_csr(50, 2**20, density=1e-4)
    rows = np.array([4, 0, 4, 49])
    batch = csr_rows(X, rows, dtype=torch.float64)
    assert batch.shape == (4, 2**20) and batch.nnz == X[rows].nnz
    # Memory follows the non-zeros: a dense batch would be 4 * 2**20 * 8 bytes.
    assert batch.nbytes == 5 * 8 + batch.nnz * 16
    np.testing.assert_array_equal(batch.to_scipy().toarray(), X[rows].toarray())
    np.testing.assert_array_equal(
        csr_rows(X, slice(10, 20)).to_scipy().toarray(), X[10:20].toarray().astype(np.float32)
    )


def test_csr_rows_accepts_other_formats_and_refuses_dense():
    X = random_csr(6, 30)
    for other in (X.tocoo(), X.tocsc(), sp.csr_array(X)):
        assert torch.equal(
            csr_rows(other, dtype=torch.float64).to_dense(), torch.tensor(X.toarray())
        )
    with pytest.raises(TypeError, match="scipy sparse"):
        csr_rows(X.toarray())
    with pytest.raises(ValueError, match="float32 or torch.float64"):
        csr_rows(X, dtype=torch.int64)


def test_csr_rows_refuses_a_broken_structure():
    X = sp.csr_matrix((np.ones(2), np.array([0, 12]), np.array([0, 1, 2])), shape=(2, 5))
    with pytest.raises(ValueError, match=r"column index outside \[0, 5\)"):
        csr_rows(X)


def test_take_and_cat_match_scipy():
    X, Z = random_csr(20, 40, seed=1), random_csr(7, 40, seed=2)
    a, b = csr_rows(X, dtype=torch.float64), csr_rows(Z, dtype=torch.float64)
    idx = torch.tensor([19, 3, 3, 0])
    np.testing.assert_array_equal(a.take(idx).to_scipy().toarray(), X[idx.numpy()].toarray())
    np.testing.assert_array_equal(
        SparseRows.cat([a, b]).to_scipy().toarray(), sp.vstack([X, Z]).toarray()
    )
    assert len(a.take(torch.tensor([], dtype=torch.long))) == 0
    with pytest.raises(ValueError, match="different numbers of features"):
        SparseRows.cat([a, csr_rows(random_csr(2, 41))])


# --------------------------------------------------------------------------- layer
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_linear_equals_linear_on_the_dense_rows(dtype):
    torch.manual_seed(0)
    layer = SparseLinear(300, 16, dtype=dtype)
    lin = dense_twin(layer)
    for X in (random_csr(40, 300, seed=3), with_duplicates_and_empty_rows()):
        X = sp.csr_matrix(X, shape=(X.shape[0], 300))
        dense = torch.tensor(X.toarray(), dtype=dtype)
        expected = lin(dense)
        batch = csr_rows(X, dtype=dtype)
        for x in (batch, dense.to_sparse_csr(), dense.to_sparse_coo(), dense):
            torch.testing.assert_close(layer(x), expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_linear_gradient_is_row_sparse_and_equals_linear(dtype):
    torch.manual_seed(0)
    layer = SparseLinear(200, 8, dtype=dtype)
    lin = dense_twin(layer)
    X = random_csr(16, 200, density=0.02, seed=4)
    target = torch.randn(16, 8, dtype=dtype)
    ((layer(csr_rows(X, dtype=dtype)) - target) ** 2).sum().backward()
    ((lin(torch.tensor(X.toarray(), dtype=dtype)) - target) ** 2).sum().backward()
    grad = layer.weight.grad
    assert grad.is_sparse
    # Only rows of features present in the batch are in the gradient.
    assert set(grad.coalesce().indices()[0].tolist()) == set(X.indices.tolist())
    torch.testing.assert_close(grad.to_dense(), lin.weight.grad.t(), **TOL[dtype])
    torch.testing.assert_close(layer.bias.grad, lin.bias.grad, **TOL[dtype])


def test_sparse_linear_dense_gradient_option():
    layer = SparseLinear(50, 4, sparse_grad=False)
    layer(csr_rows(random_csr(5, 50))).sum().backward()
    assert not layer.weight.grad.is_sparse and layer.weight.grad.shape == (50, 4)


def test_sparse_linear_errors_name_the_shapes():
    layer = SparseLinear(100, 4)
    with pytest.raises(ValueError, match=r"100 features, got a batch of shape \(3, 99\)"):
        layer(csr_rows(random_csr(3, 99)))
    with pytest.raises(TypeError, match="csr_rows"):
        layer(random_csr(3, 100))
    with pytest.raises(ValueError, match="2-D"):
        layer(torch.zeros(100))
    with pytest.raises(ValueError, match="positive"):
        SparseLinear(0, 4)


def test_sparse_linear_on_an_empty_batch():
    layer = SparseLinear(100, 4)
    out = layer(csr_rows(random_csr(5, 100)[:0]))
    assert out.shape == (0, 4)


# --------------------------------------------------------------------------- lazy Adam
def reference_lazy_adam(theta, grads, lr, betas, eps, weight_decay=0.0):
    """Lazy Adam restated row by row in plain torch: a row moves only on the steps
    whose gradient holds it; bias corrections count the parameter's steps."""
    theta = theta.clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        g = g.coalesce()
        rows = g.indices()[0].tolist()
        for r, gr in zip(rows, g.values()):
            gr = gr + weight_decay * theta[r]
            m[r] = betas[0] * m[r] + (1 - betas[0]) * gr
            v[r] = betas[1] * v[r] + (1 - betas[1]) * gr * gr
            m_hat = m[r] / (1 - betas[0] ** t)
            v_hat = v[r] / (1 - betas[1] ** t)
            theta[r] = theta[r] - lr * m_hat / (v_hat.sqrt() + eps)
    return theta


def sparse_steps(layer, opt, batches, targets):
    grads = []
    for xb, tb in zip(batches, targets):
        opt.zero_grad()
        ((layer(xb) - tb) ** 2).sum().backward()
        grads.append(layer.weight.grad.clone())
        opt.step()
    return grads


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lazy_adam_matches_the_reference_and_leaves_other_rows_alone(weight_decay):
    torch.manual_seed(0)
    layer = SparseLinear(1000, 6, dtype=torch.float64)
    start = layer.weight.detach().clone()
    opt = LazyAdam(layer.parameters(), lr=0.05, weight_decay=weight_decay)
    X = random_csr(30, 1000, density=0.005, seed=5)
    batches = [csr_rows(X, slice(i, i + 10), dtype=torch.float64) for i in (0, 10, 20)]
    targets = [torch.randn(10, 6, dtype=torch.float64) for _ in batches]
    grads = sparse_steps(layer, opt, batches, targets)
    touched = torch.zeros(1000, dtype=torch.bool)
    touched[torch.from_numpy(X.indices.astype(np.int64))] = True
    assert 0 < int(touched.sum()) < 1000
    # Rows no document touched: bit-identical weights, moments never written.
    assert torch.equal(layer.weight[~touched], start[~touched])
    assert not opt.state[layer.weight]["moments"][~touched].any()
    assert (layer.weight[touched] != start[touched]).all(1).all()
    expected = reference_lazy_adam(start, grads, 0.05, (0.9, 0.999), 1e-8, weight_decay)
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-12, atol=1e-14)


def test_lazy_adam_matches_sparse_adam_up_to_eps_placement():
    torch.manual_seed(0)
    a, b = SparseLinear(500, 4, dtype=torch.float64), SparseLinear(500, 4, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    X = random_csr(40, 500, density=0.01, seed=6)
    batches = [csr_rows(X, slice(i, i + 8), dtype=torch.float64) for i in range(0, 40, 8)]
    targets = [torch.randn(8, 4, dtype=torch.float64) for _ in batches]
    # A negligible eps removes the one difference: SparseAdam adds eps before the
    # sqrt(1 - beta2^t) correction, Adam (and LazyAdam) after it.
    sparse_steps(a, LazyAdam([a.weight], lr=0.01, eps=1e-30), batches, targets)
    sparse_steps(b, torch.optim.SparseAdam([b.weight], lr=0.01, eps=1e-30), batches, targets)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-10, atol=1e-12)


def test_lazy_adam_equals_adam_when_every_row_is_touched():
    torch.manual_seed(0)
    layer = SparseLinear(12, 5)
    lin = dense_twin(layer)
    head_a, head_b = nn.Linear(5, 3), nn.Linear(5, 3)
    head_b.load_state_dict(head_a.state_dict())
    lazy = LazyAdam([*layer.parameters(), *head_a.parameters()], lr=0.02, weight_decay=1e-3)
    adam = torch.optim.Adam([*lin.parameters(), *head_b.parameters()], lr=0.02, weight_decay=1e-3)
    for _ in range(5):
        X = torch.rand(8, 12) + 0.1  # every feature present in every batch
        y = torch.randint(3, (8,))
        for net, opt, x in (
            (nn.Sequential(layer, head_a), lazy, csr_rows(sp.csr_matrix(X.numpy()))),
            (nn.Sequential(lin, head_b), adam, X),
        ):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    torch.testing.assert_close(
        layer.weight.detach(), lin.weight.detach().t(), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(head_a.weight, head_b.weight, rtol=1e-5, atol=1e-6)


def test_lazy_adam_refuses_bad_settings():
    p = [nn.Parameter(torch.zeros(2))]
    for kwargs, name in (
        (dict(lr=-1), "lr"),
        (dict(betas=(1.0, 0.9)), "betas"),
        (dict(eps=-1), "eps"),
        (dict(weight_decay=-1), "weight_decay"),
    ):
        with pytest.raises(ValueError, match=name):
            LazyAdam(p, **kwargs)


# --------------------------------------------------------------------------- replay
def stream(n=600, d=5000, n_classes=3, seed=0, density=0.003):
    X = random_csr(n, d, density=density, seed=seed, dtype=np.float32)
    y = torch.from_numpy(np.random.RandomState(seed).randint(n_classes, size=n))
    return X, y


def feed(mem, X, y, seed=0, step=50):
    gen = torch.Generator().manual_seed(seed)
    for lo in range(0, len(y), step):
        mem.add(csr_rows(X, slice(lo, lo + step)), y[lo : lo + step], gen)
    return gen


def rows_as_set(X, y):
    return {(tuple(np.round(r, 6)), int(c)) for r, c in zip(X, y)}


@pytest.mark.parametrize("strategy", ["reservoir", "class_balanced"])
def test_sparse_memory_selects_the_rows_the_dense_memory_selects(strategy):
    X, y = stream()
    sparse_mem = SparseReplayMemory(90, strategy, X.shape[1], torch.float32, "cpu")
    dense_mem = ReplayMemory(90, strategy, X.shape[1], torch.float32, torch.device("cpu"))
    feed(sparse_mem, X, y)
    gen = torch.Generator().manual_seed(0)
    for lo in range(0, len(y), 50):
        dense_mem.add(torch.tensor(X[lo : lo + 50].toarray()), y[lo : lo + 50], gen)
    assert len(sparse_mem) == len(dense_mem) == 90
    kept = rows_as_set(sparse_mem.rows.to_dense().numpy(), sparse_mem.y)
    assert kept == rows_as_set(dense_mem.X.numpy(), dense_mem.y)
    if strategy == "class_balanced":
        assert torch.bincount(sparse_mem.y).tolist() == [30, 30, 30]


@pytest.mark.parametrize("strategy", ["reservoir", "class_balanced"])
def test_sparse_memory_is_bounded_in_bytes(strategy):
    X, y = stream(n=1000, density=0.01)
    budget = 20_000
    mem = SparseReplayMemory(500, strategy, X.shape[1], torch.float32, "cpu", max_bytes=budget)
    gen = torch.Generator().manual_seed(0)
    for lo in range(0, 1000, 100):
        mem.add(csr_rows(X, slice(lo, lo + 100)), y[lo : lo + 100], gen)
        assert 0 < mem.nbytes <= budget
        assert len(mem) <= 500
    # The rows kept are real rows with their labels.
    all_rows = rows_as_set(X.toarray(), y)
    assert rows_as_set(mem.rows.to_dense().numpy(), mem.y) <= all_rows
    if strategy == "class_balanced":
        counts = torch.bincount(mem.y, minlength=3)
        assert int(counts.max() - counts.min()) <= 2


def test_reservoir_under_a_byte_bound_stays_uniform():
    share = []
    for seed in range(20):
        X = random_csr(1000, 300, density=0.02, seed=seed, dtype=np.float32)
        y = torch.tensor([0] * 900 + [1] * 100)  # class 1 arrives last
        mem = SparseReplayMemory(1000, "reservoir", 300, torch.float32, "cpu", max_bytes=4000)
        feed(mem, X, y, seed=seed, step=64)
        assert mem.nbytes <= 4000
        share.append(float((mem.y == 1).float().mean()))
    assert 0.05 < np.mean(share) < 0.16  # 10% of the rows seen, whenever they came


def test_sparse_memory_sample_join_and_determinism():
    X, y = stream()
    mem = SparseReplayMemory(60, "class_balanced", X.shape[1], torch.float32, "cpu")
    feed(mem, X, y)
    Xm, ym = mem.sample(25, torch.Generator().manual_seed(3))
    Xm2, ym2 = mem.sample(25, torch.Generator().manual_seed(3))
    assert torch.equal(Xm.to_dense(), Xm2.to_dense()) and torch.equal(ym, ym2)
    assert rows_as_set(Xm.to_dense().numpy(), ym) <= rows_as_set(X.toarray(), y)
    xb = csr_rows(X, slice(0, 10))
    replayed = mem.replays([10], torch.Generator())[0]
    Xj, yj, wj = mem.join_batch(xb, y[:10], torch.full((10,), 2.0), replayed)
    assert (
        Xj.shape == (20, X.shape[1]) and len(yj) == 20 and torch.equal(wj, torch.full((20,), 2.0))
    )
    assert torch.equal(Xj.take(torch.arange(10)).to_dense(), xb.to_dense())


def test_sparse_memory_state_round_trip_continues_identically():
    X, y = stream()
    a = SparseReplayMemory(80, "reservoir", X.shape[1], torch.float32, "cpu", max_bytes=6000)
    feed(a, X[:300], y[:300])
    b = SparseReplayMemory(1, "class_balanced", X.shape[1], torch.float32, "cpu")
    b.strategy = "reservoir"
    b.load_state_dict(a.state_dict())
    assert b.capacity == 80 and b.max_bytes == 6000
    for mem in (a, b):
        feed(mem, X[300:], y[300:], seed=7)
    assert torch.equal(a.rows.to_dense(), b.rows.to_dense()) and torch.equal(a.y, b.y)
    with pytest.raises(ValueError, match="10 features; the state has 5000"):
        SparseReplayMemory(5, "reservoir", 10, torch.float32, "cpu").load_state_dict(
            a.state_dict()
        )


def test_sparse_memory_follows_class_changes():
    X, y = stream()
    mem = SparseReplayMemory(90, "class_balanced", X.shape[1], torch.float32, "cpu")
    feed(mem, X, y)
    before = mem.nbytes
    mem.remap([0, 2, 4])
    assert set(mem.y.tolist()) == {0, 2, 4}
    mem.drop_classes([2])
    assert set(mem.y.tolist()) == {0, 4} and len(mem) == 60 and mem.nbytes < before
    assert len(mem.rows) == len(mem.ids) == 60
    mem.clear()
    assert len(mem) == 0 and mem.rows.nnz == 0


def test_sparse_memory_bad_rows_leave_it_unchanged():
    X, y = stream()
    mem = SparseReplayMemory(50, "reservoir", X.shape[1], torch.float32, "cpu")
    feed(mem, X[:100], y[:100])
    state = mem.state_dict()
    with pytest.raises(ValueError, match=r"5000 features; got rows of shape \(4, 10\)"):
        mem.add(random_csr(4, 10), y[:4], torch.Generator())
    with pytest.raises(ValueError, match="4 rows but y has 3"):
        mem.add(X[:4], y[:3], torch.Generator())
    after = mem.state_dict()
    for k in ("indptr", "indices", "values", "ids"):
        assert torch.equal(state[k], after[k])


def test_sparse_memory_forgets_contradicted_rows_only_for_similar_inputs():
    X, y = stream(density=0.01)
    d = X.shape[1]
    X = sp.hstack([X[:, :-20], sp.csr_matrix((X.shape[0], 20))]).tocsr()  # last 20 unused
    mem = SparseReplayMemory(90, "class_balanced", d, torch.float32, "cpu")
    feed(mem, X, y)
    # New inputs: a vocabulary of 20 columns the stream never used, in every row.
    new_words = sp.csr_matrix(np.random.RandomState(9).rand(100, 20) + 0.1)
    shifted = sp.hstack([sp.csr_matrix((100, d - 20)), new_words]).tocsr()
    mem.forget_contradicted(shifted, np.array([0]))
    assert 0 in mem.y.tolist()
    mem.forget_contradicted(X[:200], np.array([0]))  # inputs drawn like the memory's
    assert 0 not in mem.y.tolist() and len(mem) == 60


# --------------------------------------------------------------------------- corpus
def test_load_docstrings_is_deterministic_and_labelled(tmp_path):
    pkgs = ["skocl", "sklearn.feature_extraction"]
    texts, labels = load_docstrings(pkgs, data_home=tmp_path)
    again, labels2 = load_docstrings(pkgs, data_home=tmp_path)  # from the cache
    assert again == texts and labels2.tolist() == labels.tolist()
    assert len(list((tmp_path / "skocl_docstrings").iterdir())) == 2
    assert len(set(texts)) == len(texts) and min(map(len, texts)) >= 40
    # This very function's docstring is in the corpus, labelled skocl.
    assert labels[texts.index(inspect.cleandoc(load_docstrings.__doc__))] == "skocl"
    raw, raw_labels = load_docstrings(pkgs, shuffle=False, data_home=False)
    assert sorted(raw) == sorted(texts)
    assert raw_labels[0] == "skocl" and raw_labels[-1] == "sklearn.feature_extraction"
    short, _ = load_docstrings(pkgs, min_length=500, data_home=tmp_path)
    assert 0 < len(short) < len(texts) and min(map(len, short)) >= 500


def test_load_docstrings_errors():
    with pytest.raises(ValueError, match="'no_such_package_xyz' is not installed"):
        load_docstrings(["skocl", "no_such_package_xyz"], data_home=False)
    with pytest.raises(ValueError, match="empty"):
        load_docstrings([], data_home=False)
    with pytest.raises(ValueError, match="repeated"):
        load_docstrings(["skocl", "skocl"], data_home=False)
