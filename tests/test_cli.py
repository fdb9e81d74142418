"""The skocl command: train, evaluate, predict, errors and exit codes, kill and resume."""

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
import pytest
import torch

import skocl
from skocl.cli import main
from skocl.datasets import make_drift_stream

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
    np.testing.assert_array_equal(
        cut_model.predict_proba(X[:500]), full_model.predict_proba(X[:500])
    )


def test_demo_prints_the_table_and_saves_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    code, out, err = run(["demo", "--rows", "4000", "--png", png], capsys)
    assert code == 0, err
    assert "prequential accuracy as it learns" in out
    for name in ("skocl", "MLPClassifier", "SGDClassifier"):
        assert name in out.split("model")[-1]
    assert png.stat().st_size > 10_000
