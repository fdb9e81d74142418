"""Several tasks over one trunk: transfer, cost and per-task forgetting.

skocl's ``OnlineFineTuneClassifier`` learns ``Y`` of shape (n_samples, n_tasks), one
label column per task, over one shared trunk with a linear head per task (a missing label
is NaN and teaches that task nothing). This script measures what that buys, three ways,
side by side in one run.

Data ships offline: ``sklearn.datasets.load_digits``, X / 16 as float32, three tasks
derived from the digit y:

* ``digit``: y (10 classes);
* ``parity``: y % 2;
* ``>4``: y > 4 ("greater than four").

Every stream is shuffled by the seed (``RandomState(seed).permutation``); seeds 0 .. N-1
(``--seeds``, default 5). Streams are learned in chunks of 100 rows with ``partial_fit``
(no ``fit`` first). "Prequential" accuracy is test-then-train: each chunk is predicted
before it is learned, and the correct predictions are pooled over every chunk but the
first. "Held-out" accuracy is on the last 20% of the shuffled rows, which are never
learned, scored once after the stream.

1. **Transfer.** The first 80% of the shuffled digits is the stream; of its rows only 5%
   (``round(0.05 * n)``, drawn with ``RandomState(seed)``) carry a digit label, the others
   are NaN; parity and >4 are labelled on every row. The digit is predicted for *every*
   row (the true digits exist for evaluation) and its prequential and held-out accuracy
   reported for:

   * ``skocl multi-task``: one ``OnlineFineTuneClassifier(random_state=seed)``, ``Y`` with
     three columns (digit 95% NaN), ``classes=[arange(10), [0, 1], [0, 1]]`` on the first
     call;
   * ``skocl digit alone``: ``OnlineFineTuneClassifier(random_state=seed)`` fed only the
     rows of each chunk that carry a digit label (chunks with none are skipped),
     ``classes=np.arange(10)`` on its first call;
   * ``independent MLPClassifier per task``: three ``MLPClassifier(random_state=seed)``
     learned by ``partial_fit``, one per task, the digit one on the labelled rows only.
     This is exactly the model of ``MultiOutputClassifier(MLPClassifier(...))``: its
     ``partial_fit(X, Y, classes=...)`` calls ``estimator.partial_fit(X, Y[:, i],
     classes=classes[i])`` on one independent clone per column. It cannot be used as such
     here because it rejects NaN labels ("Input y contains NaN") and has no way to give
     a column its own subset of rows, so the three clones are kept by hand. Note that
     ``MLPClassifier.partial_fit`` makes one pass of mini-batches of
     ``min(200, n_samples)`` over what it is given, i.e. one Adam step per chunk of 100.

   A model that has learned nothing yet when a chunk is to be predicted (possible only for
   the digit-alone peers if the first chunks hold no digit label) counts as wrong there.

2. **Cost.** The same stream and split, every label present. Time of ``partial_fit`` over
   the whole stream and of ``predict`` (the prequential predictions, chunks 2 .. end)
   with ``time.perf_counter``, per row, for (a) one skocl model of three tasks, (b) three
   skocl single-task models, one per task (their times summed), (c) one skocl single-task
   model of the digit alone. The order of (a), (b), (c) rotates with the seed; one
   throwaway single-task and one three-task model learn and predict a chunk before any
   timing, so first-call costs (imports, allocator warm-up) are not counted. Predicting
   is timed three ways: prequential (each chunk right after an update, as a stream
   runs), steady (after the stream, the held-out rows in chunks of 100, best of 5
   repeats) and steady in one call (all held-out rows at once, best of 5): the per-call
   overhead of several heads shows in the gap between the last two. Reported: the
   median over seeds of µs per row, the ratio (a)/(b) of learning time (target < 1)
   and of predicting time (a)/(c) (target: little more than one, read as < 1.5); held-out
   accuracy per task alongside, to show what the shared trunk costs or buys with full
   labels.

3. **Forgetting per task.** Digits split by class into phase 1 (digits 0-4) and phase 2
   (5-9); each phase shuffled by the seed and its last 20% held out. The stream is phase
   1's training rows, then phase 2's, in chunks of 100 (chunks do not straddle phases),
   all three tasks labelled, label sets given on the first call. Note that >4 is
   constant within each phase (0 in phase 1, 1 in phase 2): the hardest case for that
   task. After phase 1 and after phase 2 every model is scored on phase 1's held-out rows;
   forgetting = the drop, per task. Final accuracy = per task, on the held-out rows of
   both phases after phase 2. Contenders: ``skocl multi-task defaults`` (one model,
   ``OnlineFineTuneClassifier(random_state=seed)``), ``independent skocl, memory_size=0``
   (three single-task models without replay, otherwise defaults) and ``independent
   MLPClassifier`` (three, ``partial_fit``). Target: skocl's per-task forgetting below the
   independent naive models'.

Run from the repository root (torch threads 1, BLAS threads 1)::

    python benchmarks/bench_tasks.py                  # seeds 0..4
    python benchmarks/bench_tasks.py --seeds 3 --json results/tasks.json

Figures are mean ± standard deviation (ddof=1) over seeds, except times (median over
seeds). The script prints markdown tables and a MET/MISSED line for each target; a
transfer target counts as met when skocl multi-task is above the peer on every seed.
The default run (5 seeds) takes about 15 s on 2 cores.

Extra peer (not in the brief's protocol, clearly labelled ``extra:``): the same
independent ``MLPClassifier``s with 10 ``partial_fit`` calls per chunk, because with one
call per chunk MLPClassifier barely learns, so its "forgetting" is near zero or negative
for want of anything learned.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from _provenance import skocl_hash  # noqa: E402  (benchmarks/, the script's folder)
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import skocl  # noqa: E402
from skocl import OnlineFineTuneClassifier  # noqa: E402

CHUNK = 100
TEST_FRACTION = 0.2
LABELLED_FRACTION = 0.05
TASKS = ("digit", "parity", ">4")
CLASSES = [np.arange(10), np.array([0, 1]), np.array([0, 1])]

MT = "skocl multi-task"
ALONE = "skocl digit alone"
MLP = "independent MLPClassifier per task"
MLP_PASSES = 10
MLP10 = f"extra: independent MLPClassifier per task, {MLP_PASSES} partial_fit passes per chunk"

CAUGHT: dict = defaultdict(Counter)  # warnings per contender


# --------------------------------------------------------------------------- data
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y.astype(np.int64)


def task_labels(y):
    """The three label columns (n, 3) of the digits ``y``."""
    return np.column_stack([y, y % 2, (y > 4).astype(np.int64)])


def split(n, seed):
    """Shuffled indices by ``seed``: the stream (first 80%) and the held-out rest."""
    order = np.random.RandomState(seed).permutation(n)
    cut = n - int(round(TEST_FRACTION * n))
    return order[:cut], order[cut:]


def chunks(n):
    return [slice(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]


# --------------------------------------------------------------------------- helpers
class Quiet:
    """Counts the warnings raised inside it under ``CAUGHT[name]``."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self._w = self._cm.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        for w in self._w:
            CAUGHT[self.name][w.category.__name__] += 1
        return self._cm.__exit__(*exc)


class Passes:
    """``partial_fit`` repeated ``passes`` times on each chunk (MLPClassifier makes one
    Adam step per call on a chunk of 100: with one pass it barely moves)."""

    def __init__(self, model, passes):
        self.model, self.passes = model, passes

    def partial_fit(self, X, y, classes=None):
        for p in range(self.passes):
            if p == 0 and classes is not None:
                self.model.partial_fit(X, y, classes=classes)
            else:
                self.model.partial_fit(X, y)
        return self

    def predict(self, X):
        return self.model.predict(X)


def predict_or_wrong(model, X, fitted):
    """``model.predict(X)``, or -1 everywhere (always wrong) when it has learned nothing."""
    if not fitted:
        return np.full(X.shape[0], -1)
    return model.predict(X)


def pm(values, fmt="{:.3f}"):
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return fmt.format(values[0])
    return f"{fmt.format(values.mean())} ± {fmt.format(values.std(ddof=1))}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def git_commit():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


# --------------------------------------------------------------------------- 1. transfer
def transfer(seed, X, y):
    Y = task_labels(y)
    tr, te = split(len(y), seed)
    Xs, Ys, ys = X[tr], Y[tr].astype(float), y[tr]
    n = len(tr)
    rng = np.random.RandomState(seed)
    labelled = np.zeros(n, bool)
    labelled[rng.choice(n, int(round(LABELLED_FRACTION * n)), replace=False)] = True
    Ys[~labelled, 0] = np.nan
    Xt, Yt = X[te], Y[te]

    res = {}
    # skocl multi-task
    with Quiet(MT):
        m = OnlineFineTuneClassifier(random_state=seed)
        right = seen = 0
        for k, sl in enumerate(chunks(n)):
            if k:
                right += int((m.predict(Xs[sl])[:, 0] == ys[sl]).sum())
                seen += sl.stop - sl.start
            if k == 0:
                m.partial_fit(Xs[sl], Ys[sl], classes=CLASSES)
            else:
                m.partial_fit(Xs[sl], Ys[sl])
        P = m.predict(Xt)
        assert P.shape == (len(te), 3), P.shape
    res[MT] = dict(
        prequential=right / seen,
        **{t: float((P[:, i] == Yt[:, i]).mean()) for i, t in enumerate(TASKS)},
    )

    # skocl on the digit alone (labelled rows only)
    with Quiet(ALONE):
        m = OnlineFineTuneClassifier(random_state=seed)
        fitted, right, seen = False, 0, 0
        for k, sl in enumerate(chunks(n)):
            if k:
                right += int((predict_or_wrong(m, Xs[sl], fitted) == ys[sl]).sum())
                seen += sl.stop - sl.start
            rows = np.arange(sl.start, sl.stop)[labelled[sl]]
            if rows.size == 0:
                continue
            if not fitted:
                m.partial_fit(Xs[rows], ys[rows], classes=CLASSES[0])
                fitted = True
            else:
                m.partial_fit(Xs[rows], ys[rows])
        digit_te = float((predict_or_wrong(m, Xt, fitted) == Yt[:, 0]).mean())
    res[ALONE] = dict(prequential=right / seen, digit=digit_te)

    # three independent MLPClassifiers (MultiOutputClassifier's model), 1 or 10 passes
    for name, passes in ((MLP, 1), (MLP10, MLP_PASSES)):
        with Quiet(name):
            mlps = [Passes(MLPClassifier(random_state=seed), passes) for _ in TASKS]
            fitted = [False] * 3
            right = seen = 0
            for k, sl in enumerate(chunks(n)):
                if k:
                    pred = predict_or_wrong(mlps[0], Xs[sl], fitted[0])
                    right += int((pred == ys[sl]).sum())
                    seen += sl.stop - sl.start
                for i, mlp in enumerate(mlps):
                    rows = np.arange(sl.start, sl.stop)
                    if i == 0:
                        rows = rows[labelled[sl]]
                    if rows.size == 0:
                        continue
                    yi = Ys[rows, i].astype(np.int64)
                    if not fitted[i]:
                        mlp.partial_fit(Xs[rows], yi, classes=CLASSES[i])
                        fitted[i] = True
                    else:
                        mlp.partial_fit(Xs[rows], yi)
            accs = {
                t: float((predict_or_wrong(mlps[i], Xt, fitted[i]) == Yt[:, i]).mean())
                for i, t in enumerate(TASKS)
            }
        res[name] = dict(prequential=right / seen, **accs)
    res["n_labelled"] = int(labelled.sum())
    return res


# --------------------------------------------------------------------------- 2. cost
COST_A = "(a) skocl, one model of 3 tasks"
COST_B = "(b) skocl, 3 single-task models"
COST_C = "(c) skocl, 1 single-task model (digit)"


def warm_up(X, y):
    Y = task_labels(y)
    with Quiet("warm-up"):
        for target, classes in ((y[:CHUNK], CLASSES[0]), (Y[:CHUNK], CLASSES)):
            m = OnlineFineTuneClassifier(random_state=0)
            m.partial_fit(X[:CHUNK], target, classes=classes)
            m.partial_fit(X[CHUNK : 2 * CHUNK], target)
            m.predict(X[CHUNK : 2 * CHUNK])


def run_cost(name, seed, Xs, Ys, Xt, Yt):
    """Learn the stream prequentially; return (learn s, predict s, predicted rows, acc)."""
    if name == COST_A:
        models = [(OnlineFineTuneClassifier(random_state=seed), slice(None), CLASSES)]
    elif name == COST_B:
        models = [(OnlineFineTuneClassifier(random_state=seed), i, CLASSES[i]) for i in range(3)]
    else:
        models = [(OnlineFineTuneClassifier(random_state=seed), 0, CLASSES[0])]
    n = len(Xs)
    learn = pred = 0.0
    n_pred = 0
    with Quiet(name):
        for k, sl in enumerate(chunks(n)):
            if k:
                t0 = time.perf_counter()
                for m, _, _ in models:
                    m.predict(Xs[sl])
                pred += time.perf_counter() - t0
                n_pred += sl.stop - sl.start
            t0 = time.perf_counter()
            for m, col, classes in models:
                if k == 0:
                    m.partial_fit(Xs[sl], Ys[sl, col], classes=classes)
                else:
                    m.partial_fit(Xs[sl], Ys[sl, col])
            learn += time.perf_counter() - t0
        # steady state: the held-out rows in chunks of 100, best of 5 repeats
        steady = []
        for _ in range(5):
            t0 = time.perf_counter()
            for sl in chunks(len(Xt)):
                for m, _, _ in models:
                    m.predict(Xt[sl])
            steady.append(time.perf_counter() - t0)
        whole = []
        for _ in range(5):
            t0 = time.perf_counter()
            for m, _, _ in models:
                m.predict(Xt)
            whole.append(time.perf_counter() - t0)
        acc = {}
        for m, col, _ in models:
            P = m.predict(Xt)
            if col == slice(None):
                for i, t in enumerate(TASKS):
                    acc[t] = float((P[:, i] == Yt[:, i]).mean())
            else:
                acc[TASKS[col]] = float((P == Yt[:, col]).mean())
    return dict(
        learn_us=learn / n * 1e6,
        predict_us=pred / n_pred * 1e6,
        steady_us=min(steady) / len(Xt) * 1e6,
        whole_us=min(whole) / len(Xt) * 1e6,
        **acc,
    )


def cost(seed, X, y):
    Y = task_labels(y)
    tr, te = split(len(y), seed)
    names = [COST_A, COST_B, COST_C]
    k = seed % 3
    order = names[k:] + names[:k]
    return {name: run_cost(name, seed, X[tr], Y[tr], X[te], Y[te]) for name in order}


# --------------------------------------------------------------------------- 3. forgetting
F_MT = "skocl multi-task defaults"
F_SK = "independent skocl, memory_size=0"
F_MLP = "independent MLPClassifier"
F_MLP10 = f"extra: independent MLPClassifier, {MLP_PASSES} passes per chunk"


def phases(seed, X, y):
    rng = np.random.RandomState(seed)
    out = []
    for digits_ in (np.arange(5), np.arange(5, 10)):
        idx = np.flatnonzero(np.isin(y, digits_))
        idx = idx[rng.permutation(len(idx))]
        cut = len(idx) - int(round(TEST_FRACTION * len(idx)))
        out.append((idx[:cut], idx[cut:]))
    return out


class Independent:
    """Three single-task models, one per column, behind the multi-task interface."""

    def __init__(self, make):
        self.models = [make() for _ in TASKS]

    def partial_fit(self, X, Y, classes=None):
        for i, m in enumerate(self.models):
            if classes is None:
                m.partial_fit(X, Y[:, i])
            else:
                m.partial_fit(X, Y[:, i], classes=classes[i])
        return self

    def predict(self, X):
        return np.column_stack([m.predict(X) for m in self.models])


def forgetting(seed, X, y):
    Y = task_labels(y)
    (tr1, te1), (tr2, te2) = phases(seed, X, y)
    te_all = np.concatenate([te1, te2])
    makers = {
        F_MT: lambda: OnlineFineTuneClassifier(random_state=seed),
        F_SK: lambda: Independent(
            lambda: OnlineFineTuneClassifier(memory_size=0, random_state=seed)
        ),
        F_MLP: lambda: Independent(lambda: MLPClassifier(random_state=seed)),
        F_MLP10: lambda: Independent(lambda: Passes(MLPClassifier(random_state=seed), MLP_PASSES)),
    }

    def per_task(m, rows):
        P = m.predict(X[rows])
        return np.array([(P[:, i] == Y[rows, i]).mean() for i in range(3)])

    res = {}
    for name, make in makers.items():
        with Quiet(name):
            m = make()
            first = True
            for phase, tr in enumerate((tr1, tr2)):
                for sl in chunks(len(tr)):
                    rows = tr[sl]
                    if first:
                        m.partial_fit(X[rows], Y[rows], classes=CLASSES)
                        first = False
                    else:
                        m.partial_fit(X[rows], Y[rows])
                if phase == 0:
                    after1 = per_task(m, te1)
            after2 = per_task(m, te1)
            final = per_task(m, te_all)
        res[name] = {
            t: dict(
                after1=float(after1[i]),
                after2=float(after2[i]),
                forgetting=float(after1[i] - after2[i]),
                final=float(final[i]),
            )
            for i, t in enumerate(TASKS)
        }
    return res


# --------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=5, help="number of seeds (0 .. N-1), default 5"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every per-seed figure here")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    limiter = threadpool_limits(limits=1)  # noqa: F841  (kept alive for the whole run)

    started = time.perf_counter()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print("# Several tasks over one trunk\n")
    print(
        f"{stamp}; seeds {seeds}; torch threads = {torch.get_num_threads()}, BLAS threads = 1 "
        f"(threadpoolctl); {os.cpu_count()} CPUs visible, load average at start "
        f"{os.getloadavg()[0]:.2f}; {platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, skocl {skocl.__version__} at commit "
        f"{git_commit()}, sha256 of the imported skocl modules {skocl_hash()}.\n",
        flush=True,
    )
    X, y = digits()
    warm_up(X, y)
    results = {"transfer": {}, "cost": {}, "forgetting": {}}
    for seed in seeds:
        for key, fn in (("transfer", transfer), ("cost", cost), ("forgetting", forgetting)):
            results[key][seed] = fn(seed, X, y)
            print(
                f"seed {seed} {key}: done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    n_seeds = len(seeds)
    verdicts = []

    # ---- 1. transfer
    T = results["transfer"]
    n_lab = [T[s]["n_labelled"] for s in seeds]
    rows = []
    for name in (MT, ALONE, MLP, MLP10):
        r = [T[s][name] for s in seeds]
        rows.append(
            [name, pm([x["prequential"] for x in r]), pm([x["digit"] for x in r])]
            + [pm([x[t] for x in r]) if t in r[0] else "—" for t in TASKS[1:]]
        )
    print(
        f"## 1. Transfer: digit labelled on {min(n_lab)}-{max(n_lab)} of "
        f"{len(split(len(y), 0)[0])} stream rows (5%)\n"
    )
    print(
        table(
            ["contender", "digit prequential", "digit held-out", "parity held-out", ">4 held-out"],
            rows,
        )
    )
    mt_pre = np.array([T[s][MT]["prequential"] for s in seeds])
    mt_te = np.array([T[s][MT]["digit"] for s in seeds])
    for other in (ALONE, MLP, MLP10):
        d_pre = mt_pre - np.array([T[s][other]["prequential"] for s in seeds])
        d_te = mt_te - np.array([T[s][other]["digit"] for s in seeds])
        ok = d_pre.min() > 0 and d_te.min() > 0
        verdicts.append(
            f"{'MET' if ok else 'MISSED'}: transfer, skocl multi-task digit accuracy above "
            f"{other}: prequential +{d_pre.mean():.3f} (per-seed min {d_pre.min():+.3f}), "
            f"held-out +{d_te.mean():.3f} (per-seed min {d_te.min():+.3f})"
        )
    print()

    # ---- 2. cost
    C = results["cost"]
    rows = []
    keys = ("learn_us", "predict_us", "steady_us", "whole_us")
    med = {}
    for name in (COST_A, COST_B, COST_C):
        r = [C[s][name] for s in seeds]
        med[name] = {k: float(np.median([x[k] for x in r])) for k in keys}
        rows.append(
            [name]
            + [f"{med[name][k]:.1f}" for k in keys]
            + [pm([x[t] for x in r]) if t in r[0] else "—" for t in TASKS]
        )
    print("## 2. Cost (all labels; times: median over seeds of µs per row)\n")
    print(
        table(
            [
                "model",
                "learn µs/row",
                "predict µs/row (prequential)",
                "predict µs/row (steady, chunks of 100)",
                "predict µs/row (steady, one call)",
                "digit held-out",
                "parity held-out",
                ">4 held-out",
            ],
            rows,
        )
    )

    def ratio(key, num, den):
        per = [C[s][num][key] / C[s][den][key] for s in seeds]
        return med[num][key] / med[den][key], min(per), max(per)

    ratios = {
        "learn (a)/(b)": ratio("learn_us", COST_A, COST_B),
        "learn (a)/(c)": ratio("learn_us", COST_A, COST_C),
        "predict prequential (a)/(c)": ratio("predict_us", COST_A, COST_C),
        "predict prequential (b)/(c)": ratio("predict_us", COST_B, COST_C),
        "predict steady (a)/(c)": ratio("steady_us", COST_A, COST_C),
        "predict steady (b)/(c)": ratio("steady_us", COST_B, COST_C),
        "predict steady one call (a)/(c)": ratio("whole_us", COST_A, COST_C),
        "predict steady one call (b)/(c)": ratio("whole_us", COST_B, COST_C),
    }
    print()
    print(
        table(
            ["ratio", "of the medians", "per seed, min - max"],
            [[k, f"{v[0]:.2f}", f"{v[1]:.2f} - {v[2]:.2f}"] for k, v in ratios.items()],
        )
    )
    print()
    lr = ratios["learn (a)/(b)"][0]
    verdicts.append(
        f"{'MET' if lr < 1 else 'MISSED'}: cost, learning (a)/(b) = {lr:.2f} (target < 1)"
    )
    for k in (
        "predict prequential (a)/(c)",
        "predict steady (a)/(c)",
        "predict steady one call (a)/(c)",
    ):
        v = ratios[k][0]
        verdicts.append(
            f"{'MET' if v < 1.5 else 'MISSED'}: cost, {k} = {v:.2f} (target: "
            "little more than one; read here as < 1.5)"
        )

    # ---- 3. forgetting
    F = results["forgetting"]
    rows = []
    for name in (F_MT, F_SK, F_MLP, F_MLP10):
        for t in TASKS:
            r = [F[s][name][t] for s in seeds]
            rows.append(
                [name, t]
                + [pm([x[k] for x in r]) for k in ("after1", "after2", "forgetting", "final")]
            )
    print("## 3. Forgetting per task (phase 1 = digits 0-4, phase 2 = digits 5-9)\n")
    print(
        table(
            [
                "contender",
                "task",
                "phase-1 test after phase 1",
                "phase-1 test after phase 2",
                "forgetting",
                "final, all test rows",
            ],
            rows,
        )
    )
    print()
    for other in (F_SK, F_MLP, F_MLP10):
        for t in TASKS + ("mean of the 3 tasks",):
            ts = TASKS if t not in TASKS else (t,)
            mt = np.mean([F[s][F_MT][u]["forgetting"] for s in seeds for u in ts])
            o = np.mean([F[s][other][u]["forgetting"] for s in seeds for u in ts])
            verdicts.append(
                f"{'MET' if mt < o else 'MISSED'}: forgetting of {t}, skocl "
                f"multi-task {mt:.3f} vs {other} {o:.3f}"
            )

    print("## Targets\n")
    for v in verdicts:
        print("* " + v)
    caught = {k: dict(v) for k, v in CAUGHT.items() if v}
    print(f"\nWarnings caught: {caught or 'none'}")
    elapsed = time.perf_counter() - started
    print(f"\nTotal time {elapsed:.0f} s for {n_seeds} seed(s).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "stamp": stamp,
                    "seeds": seeds,
                    "commit": git_commit(),
                    "elapsed_s": elapsed,
                    "results": results,
                    "verdicts": verdicts,
                    "warnings": caught,
                },
                f,
                indent=1,
                default=str,
            )


if __name__ == "__main__":
    main()
