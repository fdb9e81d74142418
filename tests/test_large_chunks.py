"""Chunks larger than the replay memory and than the drift monitor's sample: each
memory row about once a call, and a uniform sample of WATCH_ROWS rows watched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skocl import OnlineFineTuneClassifier
from skocl._drift import WATCH_ROWS
from skocl.datasets import make_drift_stream


class CountingDetector:
    """river's detector interface: counts the values, fires on the last one of a call
    of ``fire_after`` values."""

    def __init__(self, fire_after=None):
        self.fire_after, self.n, self.drift_detected = fire_after, 0, False

    def update(self, x):
        self.n += 1
        self.drift_detected = self.fire_after is not None and self.n == self.fire_after
        return self


@pytest.fixture(scope="module")
def stream():
    X, y, _ = make_drift_stream(12_000, 6, 3, drift_points=(), random_state=0)
    return X, y


def _drawn(clf, monkeypatch):
    """Rows the replay memory hands out to each trunk mini-batch."""
    memory, drawn = clf.learner_.memory, []
    replays = memory.replays

    def counting(sizes, gen, share=1.0, targets=False):
        out = replays(sizes, gen, share, targets)
        drawn.extend(len(replayed[1]) for replayed in out)
        return out

    monkeypatch.setattr(memory, "replays", counting)
    return drawn


def test_a_chunk_larger_than_the_memory_replays_about_the_memory_once(stream, monkeypatch):
    X, y = stream
    clf = OnlineFineTuneClassifier(
        memory_size=500, head_steps=0, drift_detector=None, random_state=0
    ).partial_fit(X[:1000], y[:1000])
    held = len(clf.learner_.memory)
    assert held == 498  # 166 rows of each of 3 classes
    drawn = _drawn(clf, monkeypatch)
    clf.partial_fit(X[1000:6000], y[1000:6000])  # 25 mini-batches of 200
    assert drawn == [20] * 25  # ceil(200 * 498 / 5000): about the memory, once
    drawn.clear()
    clf.partial_fit(X[6000:6300], y[6000:6300])  # smaller than the memory: 1:1
    assert drawn == [200, 100]


def test_a_large_chunk_is_watched_through_a_sample_in_stream_order(stream):
    X, y = stream
    n = 5000
    detector = CountingDetector()
    clf = OnlineFineTuneClassifier(drift_detector=detector, random_state=0)
    clf.partial_fit(X[:1000], y[:1000])
    watched = clf.drift_detector_
    clf.partial_fit(X[1000 : 1000 + n], y[1000 : 1000 + n])
    assert watched.n == WATCH_ROWS
    clf.partial_fit(X[6000:6100], y[6000:6100])  # a small chunk: every row
    assert watched.n == WATCH_ROWS + 100


def test_a_detection_in_a_sample_is_dated_at_its_row(stream):
    X, y = stream
    # Fires at the last value of the second call's sample: the last sampled row, at
    # most the chunk's last row, past all but a few of its rows.
    clf = OnlineFineTuneClassifier(drift_detector=CountingDetector(999 + WATCH_ROWS))
    clf.set_params(random_state=0).partial_fit(X[:1000], y[:1000])
    clf.partial_fit(X[1000:1999], y[1000:1999])  # watched whole: 999 values
    clf.partial_fit(X[1999:6999], y[1999:6999])
    assert clf.drift_detector_.n == 999 + WATCH_ROWS
    (when,) = clf.drifts_
    assert 1999 + 4900 < when <= 6999


def test_large_chunks_learn_and_repeat_exactly(stream):
    X, y = stream
    runs = []
    for _ in range(2):
        clf = OnlineFineTuneClassifier(random_state=0)
        for start in range(0, 12_000, 4000):
            clf.partial_fit(X[start : start + 4000], y[start : start + 4000])
        runs.append(clf)
    assert (runs[0].predict(X) == y).mean() > 0.6
    for a, b in zip(runs[0].module_.parameters(), runs[1].module_.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(runs[0].drifts_, runs[1].drifts_)


@pytest.mark.parametrize("weighted", [False, True])
def test_mini_batches_gathered_in_blocks_are_those_of_the_drawn_order(monkeypatch, weighted):
    """A chunk's dense rows are gathered a block of mini-batches at a time; each
    mini-batch holds the rows of its slice of the drawn order, and a draw made after
    ``batches`` returns comes after the order's."""
    from skocl import _rows
    from skocl._rows import make_rows

    monkeypatch.setattr(_rows, "GATHER_ELEMENTS", 3 * 16 * 5)  # blocks of 3 mini-batches
    rng = np.random.RandomState(0)
    X, y = rng.randn(107, 5).astype(np.float32), rng.randint(3, size=107)
    w = rng.rand(107) if weighted else None
    rows = make_rows(X, y, w, torch.float32, torch.device("cpu"))
    gen = torch.Generator().manual_seed(4)
    batches = rows.batches(16, gen)
    after = torch.randint(1000, (5,), generator=gen)
    ref = torch.Generator().manual_seed(4)
    order = torch.randperm(107, generator=ref)
    assert torch.equal(after, torch.randint(1000, (5,), generator=ref))
    got = list(batches)
    assert [len(b[1]) for b in got] == rows.batch_sizes(16) == [16] * 6 + [11]
    for i, (Xb, yb, wb, replayed) in enumerate(got):
        idx = order[16 * i : 16 * (i + 1)]
        assert torch.equal(Xb, torch.from_numpy(X)[idx]) and Xb.is_contiguous()
        assert torch.equal(yb, torch.from_numpy(y.astype(np.int64))[idx])
        assert (wb is None) == (not weighted) and replayed is None
        if weighted:
            assert torch.equal(wb, rows.w[idx])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("uneven", [False, True])
@pytest.mark.parametrize("per_block", [3, 4])  # the short last mini-batch alone, or not
def test_replayed_rows_join_each_mini_batch_in_order(monkeypatch, weighted, uneven, per_block):
    """Each mini-batch comes followed by its replayed rows (joined in the block's copy
    for unweighted dense rows of full mini-batches replayed alike, else handed over to
    join), drawn after the order."""
    from skocl import _rows
    from skocl._rows import make_rows

    monkeypatch.setattr(_rows, "GATHER_ELEMENTS", per_block * 16 * 5)
    rng = np.random.RandomState(1)
    X, y = rng.randn(107, 5).astype(np.float32), rng.randint(3, size=107)
    rows = make_rows(X, y, rng.rand(107) if weighted else None, torch.float32, torch.device("cpu"))
    asked = []

    def replay(sizes):
        asked.append(list(sizes))
        # 7 rows each (4 for the last), or of several sizes
        counts = [7 + (i % 2 if uneven else 0) for i in range(len(sizes) - 1)] + [4]
        return [
            (torch.full((c, 5), float(100 + i)), torch.full((c,), 9, dtype=torch.long))
            for i, c in enumerate(counts)
        ]

    gen = torch.Generator().manual_seed(4)
    got = list(rows.batches(16, gen, replay))
    order = torch.randperm(107, generator=torch.Generator().manual_seed(4))
    assert asked == [rows.batch_sizes(16)]
    expected = replay(rows.batch_sizes(16))
    for i, (Xb, yb, wb, replayed) in enumerate(got):
        idx = order[16 * i : 16 * (i + 1)]
        Xm, ym = expected[i]
        if weighted:  # handed over, to be joined with the weights
            assert torch.equal(replayed[0], Xm) and torch.equal(replayed[1], ym)
            assert torch.equal(Xb, torch.from_numpy(X)[idx])
            continue
        assert wb is None
        if replayed is not None:  # a short or unevenly replayed mini-batch: handed over
            assert (i == 6 or uneven) and torch.equal(replayed[0], Xm)
            Xb, yb = torch.cat([Xb, replayed[0]]), torch.cat([yb, replayed[1]])
        assert torch.equal(Xb, torch.cat([torch.from_numpy(X)[idx], Xm]))
        assert torch.equal(yb, torch.cat([torch.from_numpy(y.astype(np.int64))[idx], ym]))


def test_replays_drawn_at_once_are_the_rows_of_a_draw_per_mini_batch():
    """One draw serves all mini-batches' replayed rows: the same rows, in the same
    order, as a draw per mini-batch (torch's CPU generator draws integers serially)."""
    from skocl._continual import ReplayMemory

    mem = ReplayMemory(300, "class_balanced", 4, torch.float32, torch.device("cpu"))
    mem.add(torch.randn(400, 4), torch.arange(400) % 3, torch.Generator().manual_seed(0))
    sizes, share = [200] * 4 + [37], 0.3
    at_once = mem.replays(sizes, torch.Generator().manual_seed(1), share)
    gen = torch.Generator().manual_seed(1)
    for n, (Xm, ym) in zip(sizes, at_once, strict=True):
        Xr, yr = mem.sample(-(-n * 3 // 10), gen)  # ceil(n * share)
        assert torch.equal(Xm, Xr) and torch.equal(ym, yr)
