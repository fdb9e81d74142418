"""
Tuning the online settings with GridSearchCV
============================================

:class:`~skocl.OnlineFineTuneClassifier` has settings that only ``partial_fit`` reads:
``trunk_lr``, ``head_lr``, ``head_steps``, ``memory_size``. A
:class:`~sklearn.model_selection.GridSearchCV` calls ``fit``, so over the bare
classifier it gives every candidate the same score. Wrapped in
:class:`~skocl.model_selection.StreamedFit`, ``fit`` pretrains on the first rows and
streams the rest through ``partial_fit``, and the search tells the candidates apart.
A :class:`~sklearn.model_selection.TimeSeriesSplit` keeps the stream's order, and
:func:`~skocl.model_selection.make_prequential_scorer` scores each test fold as a
deployed model meets it: every chunk predicted, then learned (see
:ref:`model_selection`).
"""

# %%
# A stream whose concept drifts
# -----------------------------
# :func:`skocl.datasets.make_drift_stream` draws 2,000 rows whose labelling rule
# changes twice, so how fast the model adapts online matters.

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream
from skocl.model_selection import StreamedFit, make_prequential_scorer

# A network this small runs fastest on one thread.
torch.set_num_threads(1)

X, y, drifts = make_drift_stream(2000, 10, 3, drift_points=(0.4, 0.7), random_state=0)
# Pretraining stops when the score on a held-out tenth stops improving.
base = OnlineFineTuneClassifier(hidden_layer_sizes=(32,), early_stopping=True, random_state=0)
grid = {"trunk_lr": [1e-4, 1e-2], "head_steps": [1, 5]}
cv = TimeSeriesSplit(n_splits=3)

# %%
# The bare classifier: one score for every candidate
# --------------------------------------------------
# ``fit`` never reads the online settings, so the four candidates are one model.

plain = GridSearchCV(base, grid, cv=cv).fit(X, y)
print("bare classifier:", np.round(plain.cv_results_["mean_test_score"], 4))

# %%
# StreamedFit: pretrain on 30 %, then stream in chunks of 100
# -----------------------------------------------------------
# The grid's keys gain the ``estimator__`` prefix. The prequential scorer learns from
# each test chunk after predicting it, on a copy: the score is that of a model that
# keeps learning through the test stretch, as it would in production.

streamed = StreamedFit(base, pretrain_size=0.3, chunk_size=100)
search = GridSearchCV(
    streamed,
    {f"estimator__{k}": v for k, v in grid.items()},
    cv=cv,
    scoring=make_prequential_scorer("accuracy"),
).fit(X, y)
scores = search.cv_results_["mean_test_score"]
print("StreamedFit:    ", np.round(scores, 4))
print("best:", search.best_params_)

# %%
# The winner keeps learning
# -------------------------
# ``best_estimator_`` is a :class:`~skocl.model_selection.StreamedFit` refitted on all
# the rows; its ``partial_fit`` goes on from there.

best = search.best_estimator_
X_new, y_new, _ = make_drift_stream(200, 10, 3, drift_points=(), random_state=1)
best.partial_fit(X_new, y_new)
print("rows learned by the best model:", best.estimator_.n_samples_seen_)

# %%
# The scores side by side
# -----------------------

labels = [
    f"trunk_lr={p['estimator__trunk_lr']:g}\nhead_steps={p['estimator__head_steps']}"
    for p in search.cv_results_["params"]
]
pos = np.arange(len(labels))
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.bar(pos - 0.2, plain.cv_results_["mean_test_score"], 0.4, label="GridSearchCV(classifier)")
ax.bar(pos + 0.2, scores, 0.4, label="GridSearchCV(StreamedFit(classifier)), prequential")
ax.set_xticks(pos, labels)
ax.set_ylabel("mean test score")
ax.set_ylim(0, 1)
ax.legend(loc="lower right", fontsize="small")
fig.tight_layout()
