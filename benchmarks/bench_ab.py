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
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commits", nargs="+", help="git revisions to compare")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    ).stdout.strip()
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
