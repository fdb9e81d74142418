"""The same two hot calls timed on several commits, interleaved in one run: an A/B of
what a change cost (``bench_speed.py`` compares with peers; this compares with skocl's
own history).

Each commit is checked out into a temporary git worktree and timed in its own child
process (CPU time, torch threads 1): ``predict`` of one row and ``partial_fit`` of 32
rows x 20 features on a model fitted on 2,000 rows (``memory_size=0,
drift_detector=None``, the speed benchmark's "core"); and ``partial_fit`` of 32 rows
of digits with the defaults after a ``fit`` on 500 rows that converges (the path of a
pretrained start: replay, drift detection and the head's copies at several rates),
cycling over 200 chunks; and the defaults from scratch on 10,000-row chunks of
``make_drift_stream`` (issue 10's target 2a), as a ratio of rows/s to
``MLPClassifier().partial_fit`` on the same chunks, the two interleaved (5 pairs of 3
calls, medians). Rounds go commit by commit, so load drifts hit every commit alike;
the table gives the median over rounds.

    .venv/bin/python benchmarks/bench_ab.py 5442147 a3ea343^ HEAD

``--paired REV`` is finer, for one call: the working tree's skocl against REV's, in one
process. REV's ``skocl`` package is copied (``git archive``) to a temporary folder as
``skocl_base`` (skocl imports itself relatively, so both live side by side); two models
with the defaults learn the same ``make_drift_stream`` chunks (32 rows, 20 features, 4
classes: issue 10's target 2b) in the same order, and each round times a block of calls
of each, the order alternating. The result is the median over rounds of the working
tree's CPU time over REV's: rounds run back to back, so a slow spell of the shared
machine slows both, and it resolves about 1 % where separate processes move by 5 %. At
the end the two models' weights are compared (a change that keeps the arithmetic keeps
them bit-identical). Control runs (REV ``HEAD`` on a clean tree) read 0.99 and 1.00.

    .venv/bin/python benchmarks/bench_ab.py --paired 4228738
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time, numpy as np, torch
torch.set_num_threads(1)
from skocl import OnlineFineTuneClassifier
rng = np.random.RandomState(0)
X = rng.randn(2000, 20).astype(np.float32)
y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
clf = OnlineFineTuneClassifier(max_iter=20, random_state=0, memory_size=0,
                               drift_detector=None).fit(X, y)
x1, Xc, yc = X[:1].copy(), X[:32].copy(), y[:32].copy()
def per_call(f, n, reps=15):
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        for _ in range(n):
            f()
        times.append((time.process_time() - t0) / n * 1e6)
    return float(np.median(times))
from sklearn.datasets import load_digits
Xd, yd = load_digits(return_X_y=True)
fitted = OnlineFineTuneClassifier(random_state=0).fit(Xd[:500] / 16, yd[:500])
order = rng.permutation(len(yd))
chunks = [(Xd[order[i : i + 32]] / 16, yd[order[i : i + 32]]) for i in range(0, 6400, 32)
          if len(order[i : i + 32]) == 32]
calls = iter(range(10**9))
def fitted_call():
    Xk, yk = chunks[next(calls) % len(chunks)]
    fitted.partial_fit(Xk, yk)
from sklearn.neural_network import MLPClassifier
from skocl.datasets import make_drift_stream
Xb, yb, _ = make_drift_stream(80_000, 20, 4, drift_points=(), random_state=0)
big = [(Xb[i : i + 10_000], yb[i : i + 10_000]) for i in range(0, 80_000, 10_000)]
large = OnlineFineTuneClassifier(random_state=0).partial_fit(*big[0], classes=np.arange(4))
mlp = MLPClassifier(random_state=0).partial_fit(*big[0], classes=np.arange(4))
def cycling(model):
    calls = iter(range(10**9))
    return lambda: model.partial_fit(*big[1 + next(calls) % 7])
large_call, mlp_call = cycling(large), cycling(mlp)
times = {"large": [], "mlp": []}
for _ in range(5):  # interleaved: the ratio sees the same load
    times["large"].append(per_call(large_call, 3, reps=1))
    times["mlp"].append(per_call(mlp_call, 3, reps=1))
_out = json.dumps({"predict_1": per_call(lambda: clf.predict(x1), 3000),
                   "partial_fit_32": per_call(lambda: clf.partial_fit(Xc, yc), 200),
                   "fitted_defaults_32": per_call(fitted_call, 100),
                   "defaults_10000_vs_mlp": float(np.median(times["mlp"]))
                   / float(np.median(times["large"]))})
"""

# The child also says which skocl it imported, checked against the commit's worktree.
PROBE = r"""
import skocl
print(json.dumps({**json.loads(_out), "skocl_file": skocl.__file__}))
"""


def paired(rev: str, root: str, args) -> None:
    """The working tree against ``rev`` in this process (``--paired``)."""
    import gc
    import time
    import warnings

    import numpy as np
    import torch

    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="skocl_ab_")
    archive = subprocess.run(
        ["git", "archive", rev, "skocl"], cwd=root, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    os.rename(os.path.join(tmp, "skocl"), os.path.join(tmp, "skocl_base"))
    sys.path[:0] = [root, tmp]
    import skocl_base

    import skocl
    from skocl.datasets import make_drift_stream

    warnings.simplefilter("ignore")
    n = args.rows * (args.warmup + args.rounds * args.calls + 1)
    X, y, _ = make_drift_stream(n, args.features, args.classes, drift_points=(), random_state=0)
    chunks = [(X[i : i + args.rows], y[i : i + args.rows]) for i in range(0, n, args.rows)]
    classes = np.arange(args.classes)
    models = {
        rev: skocl_base.OnlineFineTuneClassifier(random_state=0),
        "working tree": skocl.OnlineFineTuneClassifier(random_state=0),
    }
    for model in models.values():
        model.partial_fit(*chunks[0], classes=classes)
    for chunk in chunks[1 : args.warmup]:
        for model in models.values():
            model.partial_fit(*chunk)
    times: dict[str, list[float]] = {name: [] for name in models}
    pos = args.warmup
    for r in range(args.rounds):
        block, pos = chunks[pos : pos + args.calls], pos + args.calls
        order = list(models.items())
        for name, model in order if r % 2 == 0 else order[::-1]:
            gc.collect()
            gc.disable()
            start = time.process_time()
            for chunk in block:
                model.partial_fit(*chunk)
            times[name].append((time.process_time() - start) / len(block) * 1e6)
            gc.enable()
    base, work = np.array(times[rev]), np.array(times["working tree"])
    ratios = work / base
    q1, q3 = np.quantile(ratios, [0.25, 0.75])
    states = [m.learner_.module.state_dict().values() for m in models.values()]
    same = all(torch.equal(p, q) for p, q in zip(*states))
    print(
        f"{args.rows}-row partial_fit, {args.features} features, {args.classes} classes, the "
        f"defaults; {args.rounds} rounds of {args.calls} calls; torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"`{rev}`: {np.median(base):,.0f} µs a call (CPU); working tree: {np.median(work):,.0f}")
    print(f"paired ratio, working tree / `{rev}`: {np.median(ratios):.3f} (IQR {q1:.3f}-{q3:.3f})")
    print(f"the same weights at the end: {same}")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commits", nargs="+", help="git revisions to compare")
    parser.add_argument("--rounds", type=int, default=None, help="3 (30 with --paired)")
    parser.add_argument(
        "--paired", action="store_true", help="the working tree against one revision, in-process"
    )
    parser.add_argument("--rows", type=int, default=32, help="--paired: rows a call")
    parser.add_argument("--features", type=int, default=20, help="--paired")
    parser.add_argument("--classes", type=int, default=4, help="--paired")
    parser.add_argument("--calls", type=int, default=100, help="--paired: calls a round")
    parser.add_argument("--warmup", type=int, default=300, help="--paired: untimed calls")
    args = parser.parse_args()
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if args.paired:
        if len(args.commits) != 1:
            parser.error("--paired compares the working tree with one revision")
        args.rounds = args.rounds or 30
        paired(args.commits[0], root, args)
        return
    args.rounds = args.rounds or 3
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    results: dict[str, list[dict]] = {c: [] for c in args.commits}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for i, commit in enumerate(args.commits):
            trees[commit] = os.path.join(tmp, f"tree{i}")
            subprocess.run(
                ["git", "-C", root, "worktree", "add", "-f", "--detach", trees[commit], commit],
                capture_output=True,
                check=True,
            )
        try:
            for _ in range(args.rounds):
                for commit, tree in trees.items():
                    # cwd=tree: ``python -c`` puts the working directory first on
                    # sys.path, so run from the repository root it would import that
                    # checkout's skocl for every commit.
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD + PROBE],
                        cwd=tree,
                        env=dict(env, PYTHONPATH=tree),
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    record = json.loads(out.stdout.strip().splitlines()[-1])
                    if os.path.realpath(record.pop("skocl_file")) != os.path.realpath(
                        os.path.join(tree, "skocl", "__init__.py")
                    ):
                        sys.exit(f"{commit}: the child imported another checkout's skocl")
                    results[commit].append(record)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", root, "worktree", "remove", "--force", tree])
    print(
        "| commit | predict 1 row, µs (rounds) | partial_fit 32 rows, µs (rounds) "
        "| defaults after fit: partial_fit 32 rows, µs (rounds) "
        "| defaults from scratch, 10,000-row chunks: rows/s / MLPClassifier's (rounds) |"
    )
    print("|---|---:|---:|---:|---:|")
    for commit, rs in results.items():
        cells = []
        for key in ("predict_1", "partial_fit_32", "fitted_defaults_32", "defaults_10000_vs_mlp"):
            values = sorted(r[key] for r in rs)
            median = values[len(values) // 2]
            if key == "defaults_10000_vs_mlp":
                rounds = ", ".join(f"{r[key]:.3f}" for r in rs)
                cells.append(f"{median:.3f} ({rounds})")
                continue
            rounds = ", ".join(f"{r[key]:.0f}" if r[key] > 100 else f"{r[key]:.1f}" for r in rs)
            cells.append(f"{median:.1f} ({rounds})")
        print(f"| `{commit}` | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
