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
    """Rows the replay memory hands out, per call of its sample."""
    memory, drawn = clf.learner_.memory, []
    sample = memory.sample

    def counting(k, gen):
        drawn.append(k)
        return sample(k, gen)

    monkeypatch.setattr(memory, "sample", counting)
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
