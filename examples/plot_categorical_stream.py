"""
A stream with categorical columns whose categories keep arriving
================================================================

A sensor stream has a numeric column (a temperature) and a
categorical one (the site). Two new sites come online half-way through. Two
:class:`~skocl.StreamPipeline` models learn the stream test-then-train:

* the usual scikit-learn preprocessing, a ``ColumnTransformer`` with a
  ``StandardScaler`` and a ``OneHotEncoder(handle_unknown="ignore")`` fitted on the first
  chunk. It has no ``partial_fit``, so the pipeline uses it frozen (and says so with a
  :class:`~skocl.exceptions.FrozenStepWarning`): new sites all encode as nothing;
* a :class:`~skocl.compose.StreamColumnTransformer` whose parts learn online: a
  ``StandardScaler`` and an :class:`~skocl.preprocessing.OnlineOneHotEncoder`, which
  gives each new site its own column when it first appears.

See :ref:`categorical_streams`.
"""

# %%
# The stream
# ----------
# 4,000 rows in chunks of 100, from sites ``A`` and ``B`` at first; sites ``C`` and
# ``D`` come online at row 1,500. The label is 1 when site ``A`` runs hot (above 0),
# 1 when site ``B`` runs cold (below 0), 0 otherwise, and 2 for every reading of ``C``
# and 3 for ``D``: the site has to be known to label a row.

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skocl import OnlineFineTuneClassifier, StreamPipeline
from skocl.compose import StreamColumnTransformer
from skocl.exceptions import FrozenStepWarning
from skocl.preprocessing import OnlineOneHotEncoder

torch.set_num_threads(1)

rng = np.random.default_rng(0)
n, chunk = 4000, 100
site = np.where(np.arange(n) < 1500, rng.integers(0, 2, n), rng.integers(0, 4, n))
temp = rng.normal(0, 2, n)
hot = temp > 0
y = np.select([site == 0, site == 1, site == 2], [hot, ~hot, 2], 3).astype(int)
X = pd.DataFrame({"temp": temp, "site": np.array(list("ABCD"), dtype=object)[site]})
print(pd.crosstab(X["site"], y))

# %%
# Two pipelines, learned test-then-train
# --------------------------------------
# Each chunk is scored, then learned. The frozen pipeline warns once per call; the
# warning is recorded here and counted.


def make_clf():
    return OnlineFineTuneClassifier(hidden_layer_sizes=(32,), trunk_lr=1e-2, random_state=0)


frozen_prep = ColumnTransformer(
    [
        ("num", StandardScaler(), ["temp"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["site"]),
    ]
).fit(X.iloc[:chunk])
frozen = StreamPipeline([("prep", frozen_prep), ("clf", make_clf())])
online = StreamPipeline(
    [
        (
            "prep",
            StreamColumnTransformer(
                [
                    ("num", StandardScaler(), ["temp"]),
                    ("cat", OnlineOneHotEncoder(max_categories=8), ["site"]),
                ]
            ),
        ),
        ("clf", make_clf()),
    ]
)

scores = {"frozen ColumnTransformer": [], "StreamColumnTransformer": []}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", FrozenStepWarning)
    for start in range(0, n, chunk):
        Xc, yc = X.iloc[start : start + chunk], y[start : start + chunk]
        for name, pipe in zip(scores, (frozen, online)):
            if start:
                scores[name].append(pipe.score(Xc, yc))
                pipe.partial_fit(Xc, yc)
            else:
                pipe.partial_fit(Xc, yc, classes=[0, 1, 2, 3])
print(f"{len(caught)} FrozenStepWarning, e.g.: {caught[0].message}")
for name, s in scores.items():
    print(f"{name}: accuracy over the last 1,000 rows {np.mean(s[-10:]):.3f}")
print("sites learned online:", online[0].named_transformers_["cat"].categories_[0])

# %%
# After the stream, each site on its own
# --------------------------------------
# On 400 fresh rows from every site, the frozen pipeline confuses ``C`` and ``D``.

test_site = np.repeat(np.arange(4), 400)
test_temp = rng.normal(0, 2, len(test_site))
test_hot = test_temp > 0
y_test = np.select(
    [test_site == 0, test_site == 1, test_site == 2], [test_hot, ~test_hot, 2], 3
).astype(int)
X_test = pd.DataFrame({"temp": test_temp, "site": np.array(list("ABCD"), dtype=object)[test_site]})
for name, pipe in zip(scores, (frozen, online)):
    per_site = [pipe.score(X_test[test_site == s], y_test[test_site == s]) for s in range(4)]
    print(f"{name}: " + ", ".join(f"{c} {a:.2f}" for c, a in zip("ABCD", per_site)))

# %%
# Accuracy per chunk
# ------------------
# Up to row 1,500 the two agree. Then sites ``C`` and ``D`` arrive: the frozen
# encoder, which never learned them, encodes both as all zeros and the classifier
# cannot tell them apart; the online encoder gives each its column.

fig, ax = plt.subplots(figsize=(7, 3.5))
rows = np.arange(chunk, n, chunk)
for name, s in scores.items():
    ax.plot(rows, s, label=name)
ax.axvline(1500, color="tab:red", ls="--", lw=1, label="sites C and D appear")
ax.set_xlabel("rows seen")
ax.set_ylabel("accuracy on the next chunk")
ax.set_ylim(0, 1.02)
ax.legend(loc="lower left", fontsize="small")
fig.tight_layout()
