"""Prequential evaluation (the record iterator and its collector), the progress bar,
checkpoints."""

import io
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score

import skocl
from skocl import OnlineFineTuneClassifier
from skocl._checkpoint import Checkpoint, CheckpointMismatch, describe_files
from skocl._progress import progress_bar
from skocl.stream import PrequentialResult, iter_chunks, iter_prequential, prequential

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


def test_iterator_and_collector_give_the_records_of_prequential(digits):
    X, y = digits
    full = prequential(
        SGDClassifier(random_state=0),
        iter_chunks(X, y, chunksize=200),
        metrics=("accuracy", "balanced_accuracy"),
        classes=np.arange(10),
        verbose=0,
    )
    collected = PrequentialResult(["accuracy", "balanced_accuracy"])
    for record in iter_prequential(
        SGDClassifier(random_state=0),
        iter_chunks(X, y, chunksize=200),
        metrics=("accuracy", "balanced_accuracy"),
        classes=np.arange(10),
    ):
        assert record["learned"] == record["rows"] == 200
        collected.add(record)
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in collected.records] == [
        {k: v for k, v in r.items() if k not in drop} for r in full.records
    ]
    assert list(full.records[0]) == [
        "chunk",
        "rows",
        "accuracy",
        "running_accuracy",
        "balanced_accuracy",
        "running_balanced_accuracy",
        "rows_seen",
        "seconds",
    ]
    # A collector started from saved records carries the running values on.
    restored = PrequentialResult(["accuracy", "balanced_accuracy"], full.records[:3])
    for rec in full.records[3:]:
        again = restored.add({**rec, "learned": rec["rows"]})
        assert again["running_accuracy"] == pytest.approx(rec["running_accuracy"])
        assert again["rows_seen"] == rec["rows_seen"]


def test_iterator_start_reads_past_chunks_without_learning(digits):
    X, y = digits
    sgd = SGDClassifier(random_state=0)
    records = list(
        iter_prequential(sgd, iter_chunks(X, y, chunksize=100), classes=np.arange(10), start=7)
    )
    assert [r["chunk"] for r in records] == [7, 8, 9]
    twin = SGDClassifier(random_state=0)
    for lo in (700, 800, 900):
        twin.partial_fit(X[lo : lo + 100], y[lo : lo + 100], classes=np.arange(10))
    np.testing.assert_array_equal(sgd.coef_, twin.coef_)


def test_progress_bar_is_silent_off_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for tty, verbose, shown in ((False, 1, False), (True, 0, False), (True, 1, True)):
        err = Tty() if tty else io.StringIO()
        monkeypatch.setattr("sys.stderr", err)
        with progress_bar(verbose) as bar:
            bar.update(1500, {"accuracy": "0.9"})
        assert bar.shown is shown
        assert ("1.50k rows" in err.getvalue()) is shown, err.getvalue()


def test_checkpoint_is_written_atomically_and_checks_the_run(digits, tmp_path, monkeypatch):
    X, y = digits
    clf = OnlineFineTuneClassifier(random_state=0).partial_fit(X[:100], y[:100], classes=range(10))
    path = tmp_path / "run.skocl"
    run = {"chunksize": 100, "files": describe_files([__file__])}
    ckpt = Checkpoint(path, every=3, run=run, extra={"note": "kept"})
    assert not ckpt.exists()
    assert [ckpt.due(n) for n in range(1, 7)] == [False, False, True, False, False, True]
    ckpt.write(clf, {"chunks_done": 1})
    before = path.read_bytes()

    # A write that fails half-way leaves the previous checkpoint as it was.
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("skocl._checkpoint.os.replace", broken_replace)
    clf.partial_fit(X[100:200], y[100:200])
    with pytest.raises(OSError, match="disk full"):
        ckpt.write(clf, {"chunks_done": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before

    model, position = ckpt.resume()
    assert position["chunks_done"] == 1 and position["note"] == "kept"
    assert model.n_samples_seen_ == 100

    with pytest.raises(CheckpointMismatch, match="chunksize: 100 in the checkpoint, 50 now"):
        Checkpoint(path, run={**run, "chunksize": 50}).resume()
    other = tmp_path / "other.csv"
    other.write_text("a\n1\n")
    with pytest.raises(CheckpointMismatch, match="other.csv"):
        Checkpoint(path, run={**run, "files": describe_files([other])}).resume()
    # A plain model file is no checkpoint.
    skocl.save(model, tmp_path / "plain.skocl")
    with pytest.raises(CheckpointMismatch, match="no checkpoint"):
        Checkpoint(tmp_path / "plain.skocl").resume()


def test_describe_files_notices_a_changed_file(tmp_path):
    data = tmp_path / "a.csv"
    data.write_text("x,label\n" + "1,0\n" * 50_000)
    first = describe_files([str(tmp_path / "*.csv")])
    assert first[0]["path"] == str(data) and first[0]["size"] == data.stat().st_size
    text = data.read_text()
    data.write_text(text[:-4] + "2,0\n")  # same size, last row changed
    changed = describe_files([data])
    assert changed[0]["size"] == first[0]["size"]
    assert changed[0]["sha256"] != first[0]["sha256"]


def test_chunks_carry_column_names_unless_the_model_learned_without(digits):
    import warnings

    import pandas as pd

    X, y = digits
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)]).assign(digit=y)
    named = SGDClassifier(random_state=0)
    prequential(
        named, iter_chunks(frame, target="digit", chunksize=250), classes=range(10), verbose=0
    )
    assert list(named.feature_names_in_) == [f"p{i}" for i in range(64)]
    with pytest.raises(ValueError, match="same order"):
        named.predict(frame.drop(columns="digit").iloc[:, ::-1])
    # Later chunks in the model's order pass as arrays, without scikit-learn's warning
    # that they have no names; a stream with the columns in another order is refused.
    before = named.coef_.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prequential(named, iter_chunks(frame, target="digit", chunksize=250), verbose=0)
    assert not np.array_equal(named.coef_, before)
    reordered = frame[[*frame.columns[:-1][::-1], "digit"]]
    with pytest.raises(ValueError, match="same order"):
        prequential(named, iter_chunks(reordered, target="digit", chunksize=250), verbose=0)

    # A model that learned its first rows without names (a resumed run whose first
    # part came from arrays) goes on without them, and without a warning per chunk.
    unnamed = SGDClassifier(random_state=0).partial_fit(X[:100], y[:100], classes=range(10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prequential(unnamed, iter_chunks(frame, target="digit", chunksize=250), verbose=0)
    assert not hasattr(unnamed, "feature_names_in_")
