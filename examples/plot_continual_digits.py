"""
Forgetting on Split-Digits
==========================

Teach :class:`~skocl.OnlineFineTuneClassifier` the ten handwritten digits two at a
time, (0, 1), then (2, 3), ..., (8, 9), and measure what it remembers of the earlier
pairs after each one, with the accuracy matrix of :mod:`skocl.metrics`.

This is *class-incremental* learning: each task brings new classes, and at the end the
model must tell all ten apart. Naive fine-tuning learns each new pair and forgets the
rest; skocl's defaults (a class-balanced replay memory and drift detection, see
:ref:`continual`) keep the old pairs.
"""

# %%
# Tasks
# -----
# The digits, scaled to [0, 1], are split 70/30 into training and test rows
# (stratified). Task :math:`t` holds the digits :math:`2t` and :math:`2t + 1`; its test
# rows are the held-out set of that task.

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skocl import OnlineFineTuneClassifier
from skocl.metrics import average_accuracy, backward_transfer, evaluate_tasks, forgetting

# A network this small runs fastest on one thread; more only add synchronisation.
torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
test_sets = [(X_test[np.isin(y_test, p)], y_test[np.isin(y_test, p)]) for p in pairs]

# %%
# Learning the tasks in order
# ---------------------------
# Every model starts from scratch and sees each task's training rows in shuffled
# mini-batches of 32, three passes, through ``partial_fit``; the full label set is
# given up front with ``classes``. After each task, :func:`~skocl.metrics.evaluate_tasks`
# scores the model on the test rows of every task, learned or not: row :math:`i` of
# the accuracy matrix :math:`R`.


def run(**params):
    clf = OnlineFineTuneClassifier(random_state=0, **params)
    rng = np.random.RandomState(0)
    rows = []
    for pair in pairs:
        X_task, y_task = X_train[np.isin(y_train, pair)], y_train[np.isin(y_train, pair)]
        for _ in range(3):
            order = rng.permutation(len(y_task))
            for start in range(0, len(order), 32):
                batch = order[start : start + 32]
                clf.partial_fit(X_task[batch], y_task[batch], classes=np.arange(10))
        rows.append(evaluate_tasks(clf, test_sets))
    return np.array(rows)


models = {
    "naive fine-tuning": dict(memory_size=0, drift_detector=None),
    "skocl defaults": {},
}
matrices = {name: run(**params) for name, params in models.items()}

# %%
# Summaries
# ---------
# The average accuracy is the mean of the last row (all tasks, at the end); forgetting
# is the mean drop of each earlier task from its best score to its final one;
# backward transfer the mean change since just after learning it.

for name, R in matrices.items():
    print(
        f"{name:>18}: average accuracy {average_accuracy(R):.3f}, "
        f"forgetting {forgetting(R):.3f}, backward transfer {backward_transfer(R):+.3f}"
    )

# %%
# Accuracy matrices
# -----------------
# Row :math:`i`, column :math:`j`: accuracy on task :math:`j` after learning task
# :math:`i`. The diagonal is each task just learned; below it, what is left of the
# earlier tasks; above it, tasks not learned yet (zero: their classes were never seen).

import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), constrained_layout=True)
names = [f"{a},{b}" for a, b in pairs]
for ax, (name, R) in zip(axes, matrices.items()):
    image = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
    for (i, j), value in np.ndenumerate(R):
        color = "black" if value > 0.5 else "white"
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(pairs)), names)
    ax.set_yticks(range(len(pairs)), names)
    ax.set_xlabel("scored on task (digits)")
    ax.set_ylabel("after learning task (digits)")
    ax.set_title(f"{name}\naverage accuracy {average_accuracy(R):.2f}")
fig.colorbar(image, ax=axes, shrink=0.8, label="accuracy")
plt.show()

# %%
# Naive fine-tuning gets each new pair right and the others wrong: its last row is
# near zero except for digits 8 and 9. With the defaults, rows of every class seen
# are replayed alongside each new batch and the earlier tasks stay well above chance.
# The drift detector fires at each task boundary (and once more as the error falls
# again), but the new digits look unlike the memory's rows, so the memory is kept
# whole (see :ref:`drift_detection`).
