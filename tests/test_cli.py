"""The skocl command: train, evaluate, predict, warm starts, resuming only the same run,
columns by name, errors and exit codes, kill and resume."""

import ast
import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.preprocessing import StandardScaler

import skocl
import skocl.cli
from skocl._persist import read_meta
from skocl.cli import main
from skocl.datasets import make_drift_stream
from skocl.stream import open_stream, prequential

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def write_csv(path, X, y, opener=open):
    with opener(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"x{i}" for i in range(X.shape[1])] + ["label"])
        for row, label in zip(X.tolist(), y.tolist()):
            w.writerow([f"{v:.6f}" for v in row] + [label])
    return path


@pytest.fixture
def files(tmp_path):
    X, y, _ = make_drift_stream(3000, 6, 3, drift_points=(), random_state=0)
    names = np.array(["red", "green", "blue"])[y]
    a = write_csv(tmp_path / "a.csv", X[:2000], names[:2000])
    b = write_csv(tmp_path / "b.csv.gz", X[2000:], names[2000:], opener=gzip.open)
    return tmp_path, a, b, X, names


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["train", "x.csv"])  # --target missing
    assert exc.value.code == 2
    assert "--target" in capsys.readouterr().err


def test_train_predict_evaluate(files, capsys):
    tmp, a, b, X, names = files
    model = tmp / "m.skocl"
    code, out, err = run(
        [
            "train",
            a,
            b,
            "--target",
            "label",
            "--chunksize",
            "500",
            "--model",
            model,
            "-p",
            "hidden_layer_sizes=(32,)",
            "-p",
            "head_lr=0.02",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    assert "trained on 3000 rows in 6 chunks" in err
    clf = skocl.load(model)
    assert clf[-1].hidden_layer_sizes == (32,) and clf[-1].head_lr == 0.02
    assert clf[-1].n_samples_seen_ == 3000

    pred_file = tmp / "pred.csv"
    code, _, err = run(["predict", model, a, "--output", pred_file, "--proba"], capsys)
    assert code == 0, err
    with open(pred_file) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prediction", "proba_blue", "proba_green", "proba_red"]
    assert len(rows) == 2001
    pred = np.array([r[0] for r in rows[1:]])
    assert set(pred) <= {"red", "green", "blue"}
    proba = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert (pred == names[:2000]).mean() > 0.6

    code, out, err = run(
        [
            "evaluate",
            a,
            "--target",
            "label",
            "--chunksize",
            "250",
            "-q",
            "--metric",
            "accuracy",
            "--metric",
            "balanced_accuracy",
            "--output",
            tmp / "scores.csv",
        ],
        capsys,
    )
    assert code == 0, err
    assert "accuracy:" in out and "balanced_accuracy:" in out
    assert (tmp / "scores.csv").read_text().count("\n") == 9  # header + 8 chunks


def test_bad_data_names_file_line_and_column(files, capsys):
    tmp, a, *_ = files
    lines = a.read_text().splitlines()
    lines[7] = lines[7].replace(lines[7].split(",")[2], "oops", 1)
    bad = tmp / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    code, out, err = run(
        ["train", bad, "--target", "label", "--model", tmp / "m.skocl", "-q"], capsys
    )
    assert code == 1
    assert "bad.csv" in err and "line 8" in err and "x2" in err
    code, out, err = run(
        [
            "train",
            bad,
            "--target",
            "label",
            "--model",
            tmp / "m.skocl",
            "-q",
            "--on-bad-rows",
            "skip",
        ],
        capsys,
    )
    assert code == 0, err
    assert "skipped 1 bad row" in err and "line 8" in err
    assert skocl.load(tmp / "m.skocl")[-1].n_samples_seen_ == 1999

    code, _, err = run(["train", a, "--target", "nope", "--model", tmp / "m.skocl", "-q"], capsys)
    assert code == 1 and "nope" in err
    with pytest.raises(SystemExit) as exc:
        main(["train", str(a), "--target", "label", "-p", "trunk_lr=-1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["train", str(a), "--target", "label", "-p", "no_such_param=1"])
    assert exc.value.code == 2


def _weights(path):
    model = skocl.load(path)
    return model, model[-1].module_.state_dict()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_model(tmp_path):
    """A run killed mid-way and resumed from its checkpoint ends with the model of an
    uninterrupted run with the same seed."""
    X, y, _ = make_drift_stream(60_000, 10, 4, drift_points=(0.5,), random_state=1)
    data = write_csv(tmp_path / "stream.csv", X, y)
    args = [
        sys.executable,
        "-m",
        "skocl",
        "train",
        str(data),
        "--target",
        "label",
        "--chunksize",
        "500",
        "--checkpoint-every",
        "2",
        "-q",
        # A restored drift detector has a shorter history than the saved one had (see
        # the continual guide), so bit-identity is promised without one.
        "-p",
        "drift_detector=None",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    full = tmp_path / "full.skocl"
    subprocess.run([*args, "--model", str(full)], check=True, env=env, timeout=600)

    cut = tmp_path / "cut.skocl"
    proc = subprocess.Popen([*args, "--model", str(cut)], env=env)
    done = 0
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            with zipfile.ZipFile(cut) as zf:
                done = json.loads(zf.read("meta.json"))["extra"]["chunks_done"]
        except (FileNotFoundError, KeyError, zipfile.BadZipFile):
            done = 0
        if done >= 20:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 20 <= done < 120

    subprocess.run([*args, "--model", str(cut), "--resume"], check=True, env=env, timeout=600)
    full_model, full_state = _weights(full)
    cut_model, cut_state = _weights(cut)
    assert cut_model[-1].n_samples_seen_ == full_model[-1].n_samples_seen_ == 60_000
    for k in full_state:
        assert torch.equal(full_state[k], cut_state[k]), k
    np.testing.assert_array_equal(cut_model[0].mean_, full_model[0].mean_)
    assert cut_model[-1].drifts_ == full_model[-1].drifts_
    frame = pd.DataFrame(X[:500], columns=[f"x{i}" for i in range(10)])
    np.testing.assert_array_equal(cut_model.predict_proba(frame), full_model.predict_proba(frame))


def test_demo_prints_the_table_and_saves_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    code, out, err = run(["demo", "--rows", "4000", "--png", png], capsys)
    assert code == 0, err
    assert "prequential accuracy as it learns" in out
    for name in ("skocl", "MLPClassifier", "SGDClassifier"):
        assert name in out.split("model")[-1]
    assert png.stat().st_size > 10_000


# ---------------------------------------------------------------- continuing a model


def _train(tmp, model, *data, extra=(), chunksize=500, params=("hidden_layer_sizes=(16,)",)):
    argv = ["train", *data, "--target", "label", "--chunksize", str(chunksize)]
    argv += ["--model", model, "-q", *extra]
    for param in params:
        argv += ["-p", param]
    return argv


def _same_weights(a, b):
    sa, sb = a[-1].module_.state_dict(), b[-1].module_.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _reordered_csv(src, dst, order):
    frame = pd.read_csv(src, dtype=str)  # the text as it is, not re-rounded
    frame[order].to_csv(dst, index=False)
    return dst


def test_warm_start_learns_new_files_with_the_same_online_step(files, capsys):
    tmp, a, b, X, names = files
    day1 = tmp / "day1.skocl"
    code, _, err = run(_train(tmp, day1, a), capsys)
    assert code == 0, err
    assert "replaced" not in err
    code, _, err = run(_train(tmp, day1, a), capsys)  # a fresh run over an existing file
    assert code == 0 and f"note: {day1} exists and will be replaced" in err
    twin = skocl.load(day1)
    day2 = tmp / "day2.skocl"
    day2.write_bytes(day1.read_bytes())
    # The new file holds the columns in another order: they are matched by name.
    order = ["label", "x3", "x0", "x5", "x1", "x4", "x2"]
    shuffled = _reordered_csv(b, tmp / "b_shuffled.csv", order)
    code, _, err = run(_train(tmp, day2, shuffled, extra=["--warm-start"], params=()), capsys)
    assert code == 0, err
    assert "prequential accuracy" in err
    continued = skocl.load(day2)
    for chunk in open_stream(b, target="label", chunksize=500):
        frame = pd.DataFrame(chunk.X, columns=[f"x{i}" for i in range(6)], copy=False)
        twin.partial_fit(frame, chunk.y)
    assert continued[-1].n_samples_seen_ == 3000
    assert _same_weights(continued, twin)
    np.testing.assert_array_equal(continued[0].mean_, twin[0].mean_)
    assert list(continued.feature_names_in_) == [f"x{i}" for i in range(6)]


def test_warm_start_refuses_a_missing_column_and_new_parameters(files, capsys):
    tmp, a, b, *_ = files
    model = tmp / "m.skocl"
    assert run(_train(tmp, model, a), capsys)[0] == 0
    before = model.read_bytes()
    short = tmp / "short.csv"
    pd.read_csv(a, dtype=str).drop(columns="x4").to_csv(short, index=False)
    code, _, err = run(_train(tmp, model, short, extra=["--warm-start"], params=()), capsys)
    assert code == 1 and "x4" in err and "short.csv" in err
    with pytest.raises(SystemExit) as exc:
        main([str(v) for v in _train(tmp, model, b, extra=["--warm-start"])])  # has -p
    assert exc.value.code == 2
    assert "-p/--param" in capsys.readouterr().err
    assert model.read_bytes() == before


def test_warm_start_with_resume_is_safe_to_repeat(files, capsys):
    """``--warm-start --resume`` on a finished model starts the warm start; run again,
    it finds its own finished run and learns nothing twice."""
    tmp, a, b, *_ = files
    model = tmp / "m.skocl"
    assert run(_train(tmp, model, a), capsys)[0] == 0
    argv = _train(tmp, model, b, extra=["--warm-start", "--resume"], params=())
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert skocl.load(model)[-1].n_samples_seen_ == 3000
    code, _, err = run(argv, capsys)
    assert code == 0 and "nothing to resume" in err
    assert skocl.load(model)[-1].n_samples_seen_ == 3000


def test_evaluate_can_save_what_it_learned(files, capsys):
    tmp, a, b, X, names = files
    model = tmp / "m.skocl"
    assert run(_train(tmp, model, a), capsys)[0] == 0
    saved = tmp / "after.skocl"
    code, out, err = run(
        ["evaluate", b, "--target", "label", "--model", model, "--save", saved, "-q"], capsys
    )
    assert code == 0, err
    assert "accuracy:" in out and f"model saved to {saved}" in err
    after = skocl.load(saved)
    assert after[-1].n_samples_seen_ == 3000
    assert skocl.load(model)[-1].n_samples_seen_ == 2000  # --model itself is untouched
    code, out, err = run(["predict", saved, b], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 1001
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(b), "--target", "label", "--no-learn", "--save", str(saved)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # a saved model is evaluated as it is
        main(["evaluate", str(b), "--target", "label", "--model", str(model), "--seed", "3"])
    assert exc.value.code == 2
    assert "--seed cannot change them" in capsys.readouterr().err


def test_resume_refuses_another_run_and_says_what_differs(files, capsys):
    tmp, a, b, *_ = files
    model = tmp / "m.skocl"
    assert run(_train(tmp, model, a), capsys)[0] == 0
    before = model.read_bytes()
    cases = [
        (_train(tmp, model, b, extra=["--resume"]), "files"),
        (
            _train(tmp, model, a, extra=["--resume"], chunksize=250),
            "chunksize: 500 in the checkpoint, 250 now",
        ),
        (
            _train(tmp, model, a, extra=["--resume"], params=("hidden_layer_sizes=(8,)",)),
            "hidden_layer_sizes",
        ),
    ]
    for argv, expected in cases:
        code, _, err = run(argv, capsys)
        assert code == 2, (argv, err)
        assert expected in err, err
    grown = tmp / "a.csv"
    grown.write_text(grown.read_text() + grown.read_text().splitlines()[1] + "\n")
    code, _, err = run(_train(tmp, model, a, extra=["--resume"]), capsys)
    assert code == 2 and "a.csv changed since the checkpoint" in err
    assert model.read_bytes() == before


def test_resume_after_the_last_checkpoint_ends_with_a_complete_model(files, capsys, monkeypatch):
    tmp, a, b, X, names = files
    full, cut = tmp / "full.skocl", tmp / "cut.skocl"
    every = ["--checkpoint-every", "2", "-p", "drift_detector=None"]
    assert run(_train(tmp, full, a, b, extra=every), capsys)[0] == 0

    real = skocl.cli._model_input
    calls = []

    def interrupt_at_fifth(model, chunks, X):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(model, chunks, X)

    monkeypatch.setattr(skocl.cli, "_model_input", interrupt_at_fifth)
    code, _, err = run(_train(tmp, cut, a, b, extra=every), capsys)
    assert code == 130
    assert skocl.load(cut)[-1].n_samples_seen_ == 2000  # the checkpoint after 4 chunks
    monkeypatch.undo()
    code, _, err = run(_train(tmp, cut, a, b, extra=[*every, "--resume"]), capsys)
    assert code == 0, err
    assert _same_weights(skocl.load(cut), skocl.load(full))
    code, _, err = run(["predict", cut, b], capsys)
    assert code == 0, err

    # Every chunk learned before the kill, the final save lost: the resume learns
    # nothing and still writes a complete model file that predict accepts.
    from skocl._checkpoint import Checkpoint
    from skocl._persist import read_meta

    meta = read_meta(full)["extra"]
    Checkpoint(cut, run=meta["run"]).write(
        skocl.load(full), {"chunks_done": 6, "rows_seen": 3000, "complete": False}
    )
    code, _, err = run(_train(tmp, cut, a, b, extra=[*every, "--resume"]), capsys)
    assert code == 0, err
    assert "0 learned now" in err
    assert read_meta(cut)["extra"]["features"] == [f"x{i}" for i in range(6)]
    assert read_meta(cut)["extra"]["complete"] is True
    assert _same_weights(skocl.load(cut), skocl.load(full))
    assert run(["predict", cut, b], capsys)[0] == 0


# --------------------------------------------------------------------- columns by name


def test_models_from_files_keep_their_column_names(files, capsys):
    """The issue's scenario: a DataFrame with the columns in another order is refused,
    never silently misread."""
    tmp, a, b, X, names = files
    for extra in ([], ["--no-scale"]):
        model = tmp / "m.skocl"
        assert run(_train(tmp, model, a, extra=extra), capsys)[0] == 0
        clf = skocl.load(model)
        columns = [f"x{i}" for i in range(6)]
        assert list(clf.feature_names_in_) == columns
        frame = pd.DataFrame(X[2000:], columns=columns)
        with pytest.warns(UserWarning, match="feature names"):
            unnamed = clf.predict(frame.to_numpy())  # by position: sklearn warns
        np.testing.assert_array_equal(clf.predict(frame), unnamed)
        with pytest.raises(ValueError, match="[Ff]eature names"):
            clf.predict(frame[columns[::-1]])

    # prequential over a reader's stream does the same.
    pipe = skocl.make_stream_pipeline(
        StandardScaler(), skocl.OnlineFineTuneClassifier(hidden_layer_sizes=(8,))
    )
    prequential(pipe, open_stream(a, target="label", chunksize=500), verbose=0)
    assert list(pipe.feature_names_in_) == [f"x{i}" for i in range(6)]

    # predict reads the model's columns by name, wherever they are in the file.
    shuffled = _reordered_csv(
        b, tmp / "shuffled.csv", ["x5", "label", "x2", "x0", "x4", "x1", "x3"]
    )
    _, in_order, _ = run(["predict", model, b, "--proba"], capsys)
    code, reordered, err = run(["predict", model, shuffled, "--proba"], capsys)
    assert code == 0, err
    assert reordered == in_order


def test_naming_chunks_does_not_change_what_is_learned(files):
    tmp, a, *_ = files
    named = skocl.OnlineFineTuneClassifier(hidden_layer_sizes=(8,), random_state=0)
    plain = skocl.OnlineFineTuneClassifier(hidden_layer_sizes=(8,), random_state=0)
    prequential(named, open_stream(a, target="label", chunksize=500), verbose=0)
    for chunk in open_stream(a, target="label", chunksize=500):
        plain.partial_fit(chunk.X, chunk.y)
    sa, sb = named.module_.state_dict(), plain.module_.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not hasattr(plain, "feature_names_in_") and hasattr(named, "feature_names_in_")


# ------------------------------------------------------------------ the command itself


def test_help_does_not_import_torch():
    for argv in (["--help"], ["train", "--help"], ["predict", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "skocl", *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0
        assert "usage: skocl" in proc.stdout
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
        assert "torch" not in imported and "sklearn" not in imported


def test_cli_module_imports_only_the_standard_library():
    """What skocl.cli adds to the import of the package: nothing but the standard library,
    so the command's help waits only on the package's own imports."""
    code = (
        "import sys, skocl; before = set(sys.modules); import skocl.cli; "
        "skocl.cli.build_parser().format_help(); "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith('skocl')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    added = ast.literal_eval(proc.stdout.strip())
    assert not [m for m in added if m.split(".")[0] in ("torch", "sklearn", "numpy", "pandas")]


@pytest.mark.slow
def test_predict_into_a_closed_pipe_ends_quietly(files, capsys):
    tmp, a, *_ = files
    model = tmp / "m.skocl"
    assert run(_train(tmp, model, a), capsys)[0] == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "skocl", "predict", str(model), str(a), "--proba"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline().startswith(b"prediction")
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_train_prints_its_prequential_accuracy(files, capsys):
    tmp, a, b, X, names = files
    code, _, err = run(_train(tmp, tmp / "m.skocl", a), capsys)
    assert code == 0, err
    pipe = skocl.make_stream_pipeline(
        StandardScaler(),
        skocl.OnlineFineTuneClassifier(hidden_layer_sizes=(16,), random_state=0),
    )
    expected = prequential(pipe, open_stream(a, target="label", chunksize=500), verbose=0)
    assert f"prequential accuracy: {expected.running():.4f} over 1500 rows" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "a.csv", "--target", "label", "--chunksize", "0"],
        ["train", "a.csv", "--target", "label", "--chunksize", "ten"],
        ["train", "a.csv", "--target", "label", "--checkpoint-every", "0"],
        ["evaluate", "a.csv", "--target", "label", "--metric", "no_such_metric"],
        ["predict", "m.skocl", "a.csv", "--chunksize", "-5"],
        ["demo", "--rows", "0"],
        ["train", "a.csv", "--target", "label", "-p", "=3"],
        ["train", "a.csv", "--target", "label", "--features", "x0,label"],
        ["train", "a.csv", "--target", "label", "--features", "x0,x1,x0"],
        ["train", "a.csv", "--target", "label", "--model", "nowhere/m.skocl"],
        ["evaluate", "a.csv", "--target", "label", "--save", "nowhere/m.skocl"],
        ["train", "a.csv", "--target", "label", "--target", "label"],
        ["train", "a.csv", "--target", "label", "--target", "x0", "--features", "x0,x1"],
        ["train", "a.csv", "--target", "label", "--target", "x0", "--classes", "red,blue"],
        ["train", "a.csv", "--target", "label", "--classes", "red", "--classes", "blue"],
        ["evaluate", "a.csv", "--target", "label", "--target", "x0", "--metric", "f1_macro"],
    ],
)
def test_every_bad_command_line_exits_with_2(argv, files, capsys, monkeypatch):
    tmp, *_ = files
    monkeypatch.chdir(tmp)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp / "model.skocl").exists()


@pytest.mark.parametrize("body", ["x0,x1,label\n", "x0,x1,label\n\n\n"])
def test_a_file_without_data_rows_is_an_error_and_writes_nothing(body, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text(body)
    model = tmp_path / "m.skocl"
    code, out, err = run(["train", empty, "--target", "label", "--model", model, "-q"], capsys)
    assert code == 1
    assert f"no data rows in {empty}" in err
    assert "saved" not in err and not model.exists()
    code, out, err = run(["evaluate", empty, "--target", "label", "-q"], capsys)
    assert code == 1 and "no data rows" in err


# ------------------------------------------------------------------ several targets


@pytest.fixture
def tasks(tmp_path):
    """A CSV with two label columns, ``size`` (integers) and ``colour`` (text), each
    missing on some rows and both on others."""
    X, y, _ = make_drift_stream(1200, 6, 3, drift_points=(), random_state=0)
    frame = pd.DataFrame(X.round(6), columns=[f"x{i}" for i in range(6)])
    frame["size"] = pd.array(y, dtype="Int64")
    frame["colour"] = np.where((y + (X[:, 0] > 0)) % 2 == 1, "odd", "even").astype(object)
    frame.loc[frame.index % 5 == 1, "size"] = pd.NA
    frame.loc[frame.index % 7 == 2, "colour"] = None
    frame.loc[frame.index % 50 == 49, ["size", "colour"]] = None
    path = tmp_path / "tasks.csv"
    frame.to_csv(path, index=False)
    return tmp_path, path, frame


def _train_tasks(path, model, *extra):
    argv = ["train", path, "--target", "size", "--target", "colour", "--chunksize", "300"]
    return argv + [
        "--model",
        model,
        "--on-bad-rows",
        "skip",
        "-q",
        "-p",
        "hidden_layer_sizes=(16,)",
        *extra,
    ]


def test_several_targets_train_evaluate_and_predict(tasks, capsys):
    tmp, path, frame = tasks
    model = tmp / "m.skocl"
    code, _, err = run(_train_tasks(path, model), capsys)
    assert code == 0, err
    unlabelled = int(frame[["size", "colour"]].isna().all(axis=1).sum())
    assert f"skipped {unlabelled} bad row(s)" in err
    assert "no target value: every target column ('size', 'colour') is missing" in err
    assert f"trained on {1200 - unlabelled} rows in 4 chunks" in err
    clf = skocl.load(model)[-1]
    assert clf.n_outputs_ == 2
    assert clf.classes_[0].tolist() == [0, 1, 2]
    assert clf.classes_[1].tolist() == ["even", "odd"]
    assert read_meta(model)["extra"]["target"] == ["size", "colour"]
    # The tally is the subset accuracy of the model's score, chunk by chunk.
    pipe = skocl.make_stream_pipeline(
        StandardScaler(),
        skocl.OnlineFineTuneClassifier(hidden_layer_sizes=(16,), random_state=0),
    )
    stream = open_stream(path, target=["size", "colour"], chunksize=300, on_bad_rows="skip")
    subset = {"accuracy": lambda est, X, y: est.score(X, y)}
    expected = prequential(pipe, stream, metrics=subset, verbose=0)
    scored = 1200 - unlabelled - 300
    assert f"prequential subset accuracy: {expected.running():.4f} over {scored} rows" in err
    assert run(_train_tasks(path, model, "--resume"), capsys)[2].startswith("nothing to resume")

    code, out, err = run(
        ["evaluate", path, "--target", "size", "--target", "colour", "--model", model]
        + ["--no-learn", "--on-bad-rows", "skip", "-q"],
        capsys,
    )
    assert code == 0, err
    chunk = next(open_stream(path, target=["size", "colour"], on_bad_rows="skip"))
    features = pd.DataFrame(chunk.X, columns=[f"x{i}" for i in range(6)])
    assert f"accuracy: {skocl.load(model).score(features, chunk.y):.4f}" in out
    code, _, err = run(["evaluate", path, "--target", "size", "--model", model, "-q"], capsys)
    assert code == 1 and "learned 2 target(s) (size, colour), but 1 --target" in err

    code, out, err = run(["predict", model, path], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "prediction_size,prediction_colour"
    pred_file = tmp / "pred.csv"
    code, _, err = run(["predict", model, path, "--output", pred_file, "--proba"], capsys)
    assert code == 0, err
    pred = pd.read_csv(pred_file)
    proba_size = ["proba_size_0", "proba_size_1", "proba_size_2"]
    proba_colour = ["proba_colour_even", "proba_colour_odd"]
    assert list(pred.columns) == ["prediction_size", "prediction_colour"] + proba_size + [
        *proba_colour
    ]
    assert len(pred) == 1200  # predict reads every row, labelled or not
    expected = skocl.load(model).predict(frame[[f"x{i}" for i in range(6)]])
    assert pred["prediction_size"].tolist() == expected[:, 0].tolist()
    assert pred["prediction_colour"].tolist() == expected[:, 1].tolist()
    for columns in (proba_size, proba_colour):
        np.testing.assert_allclose(pred[columns].sum(axis=1), 1, rtol=1e-5)


def test_classes_of_several_targets_come_once_per_target(tasks, capsys):
    tmp, path, _ = tasks
    model = tmp / "m.skocl"
    argv = _train_tasks(path, model, "--classes", "0,1,2,3", "--classes", "even,odd")
    code, _, err = run(argv, capsys)
    assert code == 0, err
    clf = skocl.load(model)[-1]
    assert clf.classes_[0].tolist() == [0, 1, 2, 3]  # 3 never appears: the set is fixed
    assert clf.classes_[1].tolist() == ["even", "odd"]


def test_one_target_is_recorded_as_before(files, capsys):
    """One --target and one --classes are saved as strings, as before several were
    allowed: the run records of older checkpoints still match for --resume."""
    tmp, a, *_ = files
    model = tmp / "m.skocl"
    code, _, err = run(_train(tmp, model, a, extra=["--classes", "blue,green,red"]), capsys)
    assert code == 0, err
    extra = read_meta(model)["extra"]
    assert extra["target"] == "label"
    assert extra["run"]["target"] == "label"
    assert extra["run"]["classes"] == "blue,green,red"
    assert run(_train(tmp, model, a, extra=["--resume"]), capsys)[0] == 2  # --classes differs
    code, _, err = run(
        _train(tmp, model, a, extra=["--resume", "--classes", "blue,green,red"]), capsys
    )
    assert code == 0 and "nothing to resume" in err
