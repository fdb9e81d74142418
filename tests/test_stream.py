"""Prequential evaluation: scores, running values, progress bar, checkpoints."""

import io
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score

from skocl import OnlineFineTuneClassifier
from skocl.stream import iter_chunks, prequential

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:1000] / 16, y[:1000]


def test_each_chunk_is_scored_before_it_is_learned(digits):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0)
    twin = OnlineFineTuneClassifier(random_state=0)
    result = prequential(
        clf,
        iter_chunks(X, y, chunksize=200),
        metrics=("accuracy", "balanced_accuracy"),
        classes=np.arange(10),
        verbose=0,
    )
    assert [r["chunk"] for r in result.records] == [0, 1, 2, 3, 4]
    assert math.isnan(result.records[0]["accuracy"])  # nothing learned yet
    expected = []
    for lo in range(0, 1000, 200):
        if lo:
            expected.append(accuracy_score(y[lo : lo + 200], twin.predict(X[lo : lo + 200])))
        twin.partial_fit(X[lo : lo + 200], y[lo : lo + 200], classes=np.arange(10))
    got = [r["accuracy"] for r in result.records[1:]]
    np.testing.assert_allclose(got, expected)
    # running accuracy = accuracy over every scored row (chunks of equal size here)
    assert result.running("accuracy") == pytest.approx(np.mean(expected))
    assert result.records[-1]["rows_seen"] == 1000
    frame = result.to_frame()
    assert list(frame["chunk"]) == [0, 1, 2, 3, 4]
    assert {"running_accuracy", "balanced_accuracy", "seconds"} <= set(frame.columns)
    for k, v in clf.module_.state_dict().items():
        assert torch.equal(v, twin.module_.state_dict()[k])


def test_works_with_any_partial_fit_estimator_and_learn_false(digits):
    X, y = digits
    sgd = SGDClassifier(random_state=0)
    result = prequential(sgd, iter_chunks(X, y, chunksize=250), classes=np.arange(10), verbose=0)
    assert result.running() > 0.7
    frozen = prequential(sgd, iter_chunks(X, y, chunksize=250), learn=False, verbose=0)
    assert [r["rows_seen"] for r in frozen.records] == [0, 0, 0, 0]


def test_progress_bar_only_on_a_terminal(digits, monkeypatch):
    pytest.importorskip("tqdm")
    X, y = digits

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for tty, verbose, shown in ((False, 1, False), (True, 0, False), (True, 1, True)):
        err = Tty() if tty else io.StringIO()
        monkeypatch.setattr("sys.stderr", err)
        prequential(
            SGDClassifier(random_state=0),
            iter_chunks(X, y, chunksize=500),
            classes=np.arange(10),
            verbose=verbose,
        )
        text = err.getvalue()
        assert ("rows" in text and "accuracy" in text) is shown, (tty, verbose, text)


def test_plot(digits):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    X, y = digits
    result = prequential(
        SGDClassifier(random_state=0),
        iter_chunks(X, y, chunksize=100),
        classes=np.arange(10),
        verbose=0,
    )
    ax = result.plot(drifts=[300])
    assert ax.get_xlabel() == "rows seen"
    assert len(ax.lines) == 3  # per chunk, running, one drift


def test_resume_from_checkpoint_in_process(digits, tmp_path):
    X, y = digits
    path = tmp_path / "ckpt.skocl"
    full = prequential(
        OnlineFineTuneClassifier(random_state=0),
        iter_chunks(X, y, chunksize=100),
        classes=np.arange(10),
        verbose=0,
    )

    class Stop(Exception):
        pass

    def stop_at_six(record):
        if record["chunk"] == 6:
            raise Stop

    with pytest.raises(Stop):
        prequential(
            OnlineFineTuneClassifier(random_state=0),
            iter_chunks(X, y, chunksize=100),
            classes=np.arange(10),
            verbose=0,
            checkpoint=path,
            checkpoint_every=3,
            on_chunk=stop_at_six,
        )
    resumed = prequential(
        OnlineFineTuneClassifier(random_state=0),
        iter_chunks(X, y, chunksize=100),
        classes=np.arange(10),
        verbose=0,
        checkpoint=path,
        resume=True,
    )
    assert [r["accuracy"] for r in resumed.records[1:]] == [
        r["accuracy"] for r in full.records[1:]
    ]
    a, b = full.estimator.module_.state_dict(), resumed.estimator.module_.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
