"""
Streaming digits through ``partial_fit``
========================================

Pretrain :class:`~skocl.OnlineFineTuneClassifier` on a small part of scikit-learn's
handwritten digits, then stream the remaining rows through
:meth:`~skocl.OnlineFineTuneClassifier.partial_fit` in chunks and follow the accuracy
on a held-out test set as rows arrive.

Each ``partial_fit`` call first updates the shared trunk on the chunk, then fine-tunes
the head on the chunk's features with the trunk frozen (see
:ref:`online_fine_tuning`). Before learning from a chunk we also score the model on
it: this "test, then train" (prequential) accuracy measures how well the model
predicts rows it has not seen yet, without any held-out data.
"""

# %%
# Data
# ----
# The 1,797 digits are 8x8 images with pixel values 0 to 16; dividing by 16 puts the
# features in [0, 1]. A stratified quarter is held out for testing; the rest is the
# stream, of which the first 200 rows are used to pretrain.

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skocl import OnlineFineTuneClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_stream, X_test, y_stream, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
n_pretrain, chunk_size = 200, 100
print(f"{len(y_stream)} rows to stream, {len(y_test)} held out")

# %%
# Pretraining
# -----------
# ``fit`` trains the whole network (trunk and head). ``max_iter=50`` keeps the example
# fast; ``fit`` stops there before the loss has settled and would say so with a
# ``ConvergenceWarning``, which is expected here and silenced.

clf = OnlineFineTuneClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf.fit(X_stream[:n_pretrain], y_stream[:n_pretrain])
pretrained_accuracy = clf.score(X_test, y_test)
print(f"pretrained on {n_pretrain} rows: held-out accuracy {pretrained_accuracy:.3f}")

# %%
# Streaming
# ---------
# The rest of the stream arrives ``chunk_size`` rows at a time. ``n_samples_seen_``
# counts the rows the model has learned from since ``fit``.

rows_seen = [clf.n_samples_seen_]
held_out = [pretrained_accuracy]
prequential = []
for start in range(n_pretrain, len(y_stream), chunk_size):
    X_chunk = X_stream[start : start + chunk_size]
    y_chunk = y_stream[start : start + chunk_size]
    prequential.append(clf.score(X_chunk, y_chunk))  # test on the chunk, then train
    clf.partial_fit(X_chunk, y_chunk)
    rows_seen.append(clf.n_samples_seen_)
    held_out.append(clf.score(X_test, y_test))

print(f"after {rows_seen[-1]} rows: held-out accuracy {held_out[-1]:.3f}")
print(f"partial_fit calls: {len(prequential)}, skipped steps: {clf.n_skipped_steps_}")

# %%
# Accuracy against rows seen
# --------------------------
# The held-out accuracy is measured after each chunk; the prequential accuracy of a
# chunk is plotted at the rows seen just before it was learned from. The dashed line is
# the pretrained model had it never been updated.

fig, ax = plt.subplots(figsize=(6.4, 4))
ax.plot(rows_seen, held_out, marker="o", label="held-out accuracy")
ax.plot(rows_seen[:-1], prequential, marker="s", linestyle=":", label="next chunk (prequential)")
ax.axhline(pretrained_accuracy, color="grey", linestyle="--", label="pretrained only")
ax.set_xlabel("rows seen (fit + partial_fit)")
ax.set_ylabel("accuracy")
ax.set_ylim(top=1.0)
ax.set_title("OnlineFineTuneClassifier on a stream of digits")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

# %%
# The trunk and the head learn at their own rates: ``trunk_lr`` (``0`` freezes the
# trunk, leaving only the head to adapt) and ``head_lr``, with ``trunk_epochs`` and
# ``head_steps`` setting how much work each chunk gets. Their Adam moments persist
# from one ``partial_fit`` call to the next.
print(
    f"trunk_lr={clf.trunk_lr}, head_lr={clf.head_lr}, "
    f"trunk_epochs={clf.trunk_epochs}, head_steps={clf.head_steps}"
)
print(f"final accuracy {held_out[-1]:.3f} (mean prequential {np.mean(prequential):.3f})")
