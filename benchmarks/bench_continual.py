"""Continual-learning quality of skocl's ``partial_fit`` against naive fine-tuning and peers.

Run from the repository root::

    python benchmarks/bench_continual.py              # full run, 5 seeds
    python benchmarks/bench_continual.py --seeds 3    # fewer seeds
    python benchmarks/bench_continual.py --quick      # short run, for a smoke test

Everything runs in one process with ``torch.set_num_threads(1)`` (and BLAS limited to
one thread through threadpoolctl, so that numpy-based peers are single-threaded too).
All data is generated or ships with scikit-learn (``load_digits``): nothing is
downloaded.

Benchmarks (every model starts from scratch; no ``fit`` before the stream):

1. **Split-Digits** (class-incremental). ``load_digits`` scaled by 1/16, a stratified
   70/30 train/test split (``random_state=seed``), 5 tasks of two classes each
   ((0, 1), (2, 3), ...). Each task's training rows go through ``partial_fit`` in
   shuffled mini-batches of 32, 3 passes (reshuffled each pass); the label set is given
   on the first call (``classes=np.arange(10)``). After each task every task's test
   rows are scored, giving the accuracy matrix R (5 x 5); reported: average accuracy
   (mean of R's last row), forgetting and backward transfer (``skocl.metrics``).
2. **Permuted-Digits** (domain-incremental). 5 fixed pixel permutations (the identity,
   then four drawn with ``RandomState(seed)``); task t is every training row with
   permutation t, streamed as above, and is scored on the test rows with permutation t.
3. **Drift streams**. ``make_drift_stream(10_000, 20, 4, drift_points=(0.3, 0.6, 0.8),
   kind="abrupt" | "gradual", width=1000, random_state=seed)``, test-then-train in
   chunks of 50 (the first chunk is only learned, with ``classes=np.arange(4)``).
   Reported: prequential accuracy (each chunk predicted before it is learned, pooled
   over the stream after the first chunk) and the accuracy over the 500 rows that
   follow each drift point (pooled over the three drifts).

Every contender sees the same rows in the same order for a given seed. Figures are the
mean +- standard deviation over seeds (seeds 0 .. N-1). The script prints markdown
tables and a PASS/FAIL line for each target of skocl's defaults.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import river  # noqa: E402
import sklearn  # noqa: E402
import skorch  # noqa: E402
from _provenance import skocl_hash  # noqa: E402  (benchmarks/, the script's folder)
from river.drift import ADWIN  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from torch import nn  # noqa: E402

import skocl  # noqa: E402
from skocl import OnlineFineTuneClassifier  # noqa: E402
from skocl.datasets import make_drift_stream  # noqa: E402
from skocl.metrics import average_accuracy, backward_transfer, evaluate_tasks, forgetting  # noqa: E402

BATCH, PASSES, N_TASKS, HIDDEN = 32, 3, 5, 256
DRIFT_ROWS, DRIFT_FEATURES, DRIFT_CLASSES, DRIFT_CHUNK = 10_000, 20, 4, 50
DRIFT_POINTS, DRIFT_WIDTH, AFTER_DRIFT = (0.3, 0.6, 0.8), 1000, 500

NAIVE = "naive fine-tuning"
DEFAULTS = "skocl defaults"
NO_RIVER = "skocl defaults, drift_detector=None"
JOINT = "joint training (upper bound)"
# Every mechanism off, on the defaults' network (hidden_layer_sizes=(256,)).
NAIVE_PARAMS = dict(memory_size=0, drift_detector=None, regularization=None, fusion=None)

TARGET_SPLIT, TARGET_PERMUTED, TARGET_ABRUPT_GAP = 0.90, 0.93, 0.01


# --------------------------------------------------------------------------- contenders
class SkorchMLP(nn.Module):
    def __init__(self, n_features, n_classes, hidden=HIDDEN):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
        )

    def forward(self, x):
        return self.net(x)


class SkorchAdapter:
    """skorch's ``NeuralNetClassifier`` fed float32 X and int64 y.

    Its history is cleared after each call: skorch appends an epoch per ``partial_fit``
    and its cost per call grows with the history, which nothing here reads.
    """

    def __init__(self, n_features, classes, seed):
        with torch.random.fork_rng():  # skorch initialises from torch's global generator
            torch.manual_seed(seed)
            self.net = NeuralNetClassifier(
                module=SkorchMLP,
                module__n_features=n_features,
                module__n_classes=len(classes),
                criterion=nn.CrossEntropyLoss,
                optimizer=torch.optim.Adam,
                lr=1e-3,
                max_epochs=1,
                batch_size=BATCH,
                train_split=None,
                classes=classes,
                verbose=0,
            ).initialize()

    def partial_fit(self, X, y, classes=None):
        self.net.partial_fit(X.astype(np.float32), y.astype(np.int64))
        self.net.history.clear()
        return self

    def predict(self, X):
        return self.net.predict(X.astype(np.float32))


def skocl_model(**params):
    def make(n_features, classes, seed):
        return OnlineFineTuneClassifier(random_state=seed, **params)

    return make


def contenders():
    """name -> factory(n_features, classes, seed) of an unfitted streaming model."""
    return {
        NAIVE: skocl_model(**NAIVE_PARAMS),
        DEFAULTS: skocl_model(),
        NO_RIVER: skocl_model(drift_detector=None),
        "+ replay (class_balanced, 2000)": skocl_model(
            **{**NAIVE_PARAMS, "memory_size": 2000, "memory_strategy": "class_balanced"}
        ),
        "+ replay (reservoir, 2000)": skocl_model(
            **{**NAIVE_PARAMS, "memory_size": 2000, "memory_strategy": "reservoir"}
        ),
        "+ L2-SP (reg_strength=1)": skocl_model(**{**NAIVE_PARAMS, "regularization": "l2sp"}),
        "+ EWC (reg_strength=1)": skocl_model(**{**NAIVE_PARAMS, "regularization": "ewc"}),
        "+ EMA fusion (ema_decay=0.9)": skocl_model(**{**NAIVE_PARAMS, "fusion": "ema"}),
        "+ WiSE-FT fusion (wise_alpha=0.5)": skocl_model(**{**NAIVE_PARAMS, "fusion": "wise"}),
        "+ drift detector (river ADWIN)": lambda n_features, classes, seed: (
            OnlineFineTuneClassifier(
                random_state=seed, **{**NAIVE_PARAMS, "drift_detector": ADWIN()}
            )
        ),
        "sklearn MLPClassifier(256)": lambda n_features, classes, seed: MLPClassifier(
            hidden_layer_sizes=(HIDDEN,), random_state=seed
        ),
        'sklearn SGDClassifier(loss="log_loss")': lambda n_features, classes, seed: SGDClassifier(
            loss="log_loss", random_state=seed
        ),
        "skorch NeuralNetClassifier (MLP 256, Adam 1e-3)": SkorchAdapter,
    }


def make_joint(seed):
    return OnlineFineTuneClassifier(memory_size=0, drift_detector=None, random_state=seed)


# --------------------------------------------------------------------------- data
def digits_split(seed):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)


def split_digits(seed):
    X_tr, X_te, y_tr, y_te = digits_split(seed)
    pairs = [(2 * t, 2 * t + 1) for t in range(N_TASKS)]
    train = [(X_tr[np.isin(y_tr, p)], y_tr[np.isin(y_tr, p)]) for p in pairs]
    test = [(X_te[np.isin(y_te, p)], y_te[np.isin(y_te, p)]) for p in pairs]
    return train, test


def permuted_digits(seed):
    X_tr, X_te, y_tr, y_te = digits_split(seed)
    rng = np.random.RandomState(seed)
    perms = [np.arange(X_tr.shape[1])] + [
        rng.permutation(X_tr.shape[1]) for _ in range(N_TASKS - 1)
    ]
    return [(X_tr[:, p], y_tr) for p in perms], [(X_te[:, p], y_te) for p in perms]


def task_batches(train, seed, passes):
    """Row indices of each task's mini-batches: ``passes`` shuffled passes of 32."""
    rng = np.random.RandomState(10_000 + seed)
    out = []
    for X, _ in train:
        batches = []
        for _ in range(passes):
            order = rng.permutation(len(X))
            batches += [order[s : s + BATCH] for s in range(0, len(order), BATCH)]
        out.append(batches)
    return out


# --------------------------------------------------------------------------- runs
def run_tasks(model, train, test, batches, classes):
    """Stream the tasks through ``partial_fit``; return the accuracy matrix R."""
    R, first = [], True
    for (X, y), task in zip(train, batches, strict=True):
        for idx in task:
            if first:
                model.partial_fit(X[idx], y[idx], classes=classes)
                first = False
            else:
                model.partial_fit(X[idx], y[idx])
        R.append(evaluate_tasks(model, test))
    return np.array(R)


def task_metrics(R):
    return {
        "avg_acc": average_accuracy(R),
        "forgetting": forgetting(R),
        "bwt": backward_transfer(R),
        "R": R,
    }


def run_stream(model, X, y, drifts, classes, n_rows):
    """Test-then-train in chunks of 50; prequential accuracy after the first chunk."""
    c = DRIFT_CHUNK
    model.partial_fit(X[:c], y[:c], classes=classes)
    correct = np.zeros(n_rows, dtype=bool)
    for s in range(c, n_rows, c):
        correct[s : s + c] = model.predict(X[s : s + c]) == y[s : s + c]
        model.partial_fit(X[s : s + c], y[s : s + c])
    after = np.concatenate([np.arange(d, min(d + AFTER_DRIFT, n_rows)) for d in drifts])
    return {
        "preq": float(correct[c:].mean()),
        "after_drift": float(correct[after].mean()),
        "n_drifts": len(getattr(model, "drifts_", [])) if hasattr(model, "drifts_") else None,
        "detector": getattr(model, "drift_detector_", None) is not None,
    }


# --------------------------------------------------------------------------- formatting
def pm(values, digits=3):
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def mean_std(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def r_table(R_mean):
    header = ["after task \\ scored on"] + [f"task {j}" for j in range(R_mean.shape[1])]
    rows = [[f"task {i}"] + [f"{v:.3f}" for v in row] for i, row in enumerate(R_mean)]
    return table(header, rows)


def git_commit():
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "skocl"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out + (" (skocl/ modified from it)" if dirty else "")


# --------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=5, help="number of seeds (0 .. N-1), default 5"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short run: 1 seed, 1 pass, drift streams of 3000 rows",
    )
    args = parser.parse_args(argv)
    seeds = list(range(1 if args.quick else args.seeds))
    passes = 1 if args.quick else PASSES
    n_rows = 3000 if args.quick else DRIFT_ROWS
    limiter = threadpool_limits(limits=1)  # noqa: F841  (kept alive for the whole run)

    started = time.perf_counter()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# Continual-learning benchmark ({'quick' if args.quick else 'full'} run)\n")
    print(
        f"{stamp}; seeds {seeds}; torch threads = {torch.get_num_threads()} "
        f"(`torch.set_num_threads(1)`), BLAS threads = 1 (threadpoolctl); "
        f"{os.cpu_count()} CPUs visible, load average at start {os.getloadavg()[0]:.2f}; "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"skorch {skorch.__version__}, river {river.__version__}, skocl {skocl.__version__} "
        f"at commit {git_commit()}, sha256 of the imported skocl modules {skocl_hash()}.\n",
        flush=True,
    )

    makers = contenders()
    names = list(makers) + [JOINT]
    tasks_res = {b: defaultdict(list) for b in ("split", "permuted")}
    stream_res = {k: defaultdict(list) for k in ("abrupt", "gradual")}
    seconds = defaultdict(float)
    caught = defaultdict(Counter)
    joint_iters = defaultdict(list)

    def timed(key, name, fn, *args):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            out = fn(*args)
            seconds[key, name] += time.perf_counter() - t0
        for msg in w:
            caught[key, name][msg.category.__name__] += 1
        return out

    classes10 = np.arange(10)
    for seed in seeds:
        for bench, build in (("split", split_digits), ("permuted", permuted_digits)):
            train, test = build(seed)
            batches = task_batches(train, seed, passes)
            n_features = train[0][0].shape[1]
            for name, make in makers.items():
                model = make(n_features, classes10, seed)
                R = timed(bench, name, run_tasks, model, train, test, batches, classes10)
                tasks_res[bench][name].append(task_metrics(R))
            X_all = np.concatenate([X for X, _ in train])
            y_all = np.concatenate([y for _, y in train])
            joint = timed(bench, JOINT, make_joint(seed).fit, X_all, y_all)
            joint_iters[bench].append(joint.n_iter_)
            row = evaluate_tasks(joint, test)
            tasks_res[bench][JOINT].append({"avg_acc": float(row.mean())})
            print(
                f"seed {seed} {bench}: done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        for kind in ("abrupt", "gradual"):
            X, y, drifts = make_drift_stream(
                n_rows,
                DRIFT_FEATURES,
                DRIFT_CLASSES,
                drift_points=DRIFT_POINTS,
                kind=kind,
                width=DRIFT_WIDTH,
                random_state=seed,
            )
            classes4 = np.arange(DRIFT_CLASSES)
            for name, make in makers.items():
                model = make(X.shape[1], classes4, seed)
                res = timed(kind, name, run_stream, model, X, y, drifts, classes4, n_rows)
                stream_res[kind][name].append(res)
            print(
                f"seed {seed} {kind}: done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    n_seeds = len(seeds)
    per_seed = "mean ± std over seeds" if n_seeds > 1 else "one seed"

    # ---- task benchmarks
    for bench, title in (
        ("split", "Split-Digits (class-incremental, 5 tasks of 2 classes)"),
        ("permuted", "Permuted-Digits (domain-incremental, 5 pixel permutations)"),
    ):
        rows = []
        for name in names:
            res = tasks_res[bench][name]
            acc = pm([r["avg_acc"] for r in res])
            if name == JOINT:
                fg = bwt = "n/a"
            else:
                fg, bwt = pm([r["forgetting"] for r in res]), pm([r["bwt"] for r in res])
            rows.append([name, acc, fg, bwt, f"{seconds[bench, name] / n_seeds:.1f}"])
        print(f"## {title}\n")
        print(
            "Average accuracy (mean of R's last row), forgetting, backward transfer; "
            f"{per_seed}.\n"
        )
        print(
            table(
                ["model", "average accuracy ↑", "forgetting ↓", "backward transfer ↑", "s / seed"],
                rows,
            )
        )
        print(
            f"\njoint training: `fit` on every task's training rows together, scored on every "
            f"task; epochs run: {joint_iters[bench]} (max_iter=200).\n"
        )
        for name in (NAIVE, DEFAULTS):
            R_mean = np.mean([r["R"] for r in tasks_res[bench][name]], axis=0)
            print(f"Accuracy matrix R of **{name}** (mean over seeds):\n")
            print(r_table(R_mean) + "\n")

    # ---- drift streams
    rows = []
    for name in list(makers) + [JOINT]:
        cells = [name]
        for kind in ("abrupt", "gradual"):
            res = stream_res[kind].get(name)
            if not res:
                cells += ["n/a", "n/a"]
                continue
            cells += [pm([r["preq"] for r in res]), pm([r["after_drift"] for r in res])]
        ab = stream_res["abrupt"].get(name)
        if ab and ab[0]["detector"]:
            cells.append(f"{np.mean([r['n_drifts'] for r in ab]):.1f}")
        else:
            cells.append("–")
        t = seconds["abrupt", name] + seconds["gradual", name]
        cells.append(f"{t / n_seeds:.1f}" if t else "n/a")
        rows.append(cells)
    print(
        f"## Drift streams (make_drift_stream({n_rows}, 20, 4), drifts at 30/60/80 %, "
        f"test-then-train in chunks of 50)\n"
    )
    print(
        f"Prequential accuracy (after the first chunk) and accuracy over the {AFTER_DRIFT} rows "
        f"after each drift; {per_seed}. Drifts detected: mean count on the abrupt stream "
        "(3 true drifts).\n"
    )
    print(
        table(
            [
                "model",
                "abrupt: prequential ↑",
                "abrupt: after drift ↑",
                "gradual: prequential ↑",
                "gradual: after drift ↑",
                "drifts detected (abrupt)",
                "s / seed (both)",
            ],
            rows,
        )
    )

    # ---- targets
    def verdict(ok):
        return "PASS" if ok else "FAIL"

    def in_std(margin, std):
        return f" = {margin / std:+.1f} std" if std > 0 else ""

    print("\n## Targets for skocl's defaults\n")
    if args.quick:
        print("(quick run: 1 pass and a shorter stream; the targets are set for the full run)\n")
    for bench, target, label in (
        ("split", TARGET_SPLIT, "Split-Digits average accuracy"),
        ("permuted", TARGET_PERMUTED, "Permuted-Digits average accuracy"),
    ):
        for name in (DEFAULTS, NO_RIVER):
            accs = [r["avg_acc"] for r in tasks_res[bench][name]]
            m, s = mean_std(accs)
            below = sum(a < target for a in accs)
            print(
                f"- {verdict(m >= target)}: {label} of {name} = {m:.3f} ± {s:.3f} "
                f"(target ≥ {target:.2f}; mean - target = {m - target:+.3f}"
                f"{in_std(m - target, s)}); per seed {np.round(accs, 3).tolist()}, "
                f"{below} of {len(accs)} below the target"
            )
    naive = np.array([r["preq"] for r in stream_res["abrupt"][NAIVE]])
    for name in (DEFAULTS, NO_RIVER):
        ours = np.array([r["preq"] for r in stream_res["abrupt"][name]])
        diff = ours - naive
        m, s = mean_std(diff)
        ok = m >= -TARGET_ABRUPT_GAP
        print(
            f"- {verdict(ok)}: abrupt-drift prequential accuracy of {name} = {ours.mean():.3f} vs "
            f"naive {naive.mean():.3f}; paired difference {m:+.3f} ± {s:.3f} (target ≥ "
            f"{-TARGET_ABRUPT_GAP:+.3f}; margin {m + TARGET_ABRUPT_GAP:+.3f}"
            f"{in_std(m + TARGET_ABRUPT_GAP, s)}); per seed {np.round(diff, 3).tolist()}"
        )

    if caught:
        print("\nWarnings raised (count over all seeds):\n")
        for (bench, name), counts in sorted(caught.items()):
            print(f"- {bench} / {name}: {dict(counts)}")
    elapsed = time.perf_counter() - started
    print(f"\nTotal time {elapsed:.0f} s; load average at end {os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()
