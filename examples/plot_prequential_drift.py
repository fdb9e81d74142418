"""
Prequential evaluation on a drifting stream
===========================================

Learn a generated stream whose concept changes abruptly twice, test-then-train, with
:func:`skocl.stream.prequential`, and see where the drift detector of
:class:`~skocl.OnlineFineTuneClassifier` fires against where the concept really
changed.

Each chunk is first scored by the model as it is, then learned from: the per-chunk
accuracy is how well the model predicts rows it has not seen, and the running accuracy
is the accuracy over every row scored so far (see :ref:`streaming`). The model starts
from scratch: there is no ``fit``, and the first chunk is only learned.
"""

# %%
# The stream
# ----------
# :func:`skocl.datasets.make_drift_stream` labels standard normal rows with a random
# one-hidden-layer teacher network; at each drift point the teacher moves part of the
# way to a new random one (``severity=0.8``), so the same inputs partly change labels.

import numpy as np
import torch

from skocl import OnlineFineTuneClassifier
from skocl.datasets import make_drift_stream
from skocl.stream import iter_chunks, prequential

# A network this small runs fastest on one thread; more only add synchronisation.
torch.set_num_threads(1)

X, y, drifts = make_drift_stream(
    8000, 6, 4, drift_points=(0.3, 0.65), severity=0.8, random_state=0
)
print(f"{len(y)} rows, {X.shape[1]} features, 4 classes; drifts at rows {drifts.tolist()}")

# %%
# Test, then train
# ----------------
# Two models see the same chunks of 100 rows: skocl's defaults, whose drift detector
# is river's ADWIN (``drift_detector="auto"``) fed with the prequential error, and the
# same model with detection switched off. On a detected drift the defaults drop the
# replay-memory rows that the new labels contradict, when the chunk's inputs look
# like the memory's, as they do here (see :ref:`drift_detection`).

classes = np.arange(4)
results, models = {}, {}
for name, detector in [("skocl defaults", "auto"), ("no drift detection", None)]:
    clf = OnlineFineTuneClassifier(drift_detector=detector, random_state=0)
    results[name] = prequential(clf, iter_chunks(X, y, chunksize=100), classes=classes, verbose=0)
    models[name] = clf
    print(f"{name:>20}: prequential accuracy {results[name].running():.3f}")

detected = models["skocl defaults"].drifts_
print(f"true drifts at rows {drifts.tolist()}, detected at rows {detected}")

# %%
# At each of these drifts the same inputs changed labels, so the defaults also started
# a *fresh head* (``fresh_head=True``): a head from zero, learned beside the head, that
# replaced it once it predicted the chunks better (``fresh_heads_`` counts the times;
# see :ref:`the fresh head <fresh_head>`). The same model without it:

no_fresh = OnlineFineTuneClassifier(fresh_head=False, random_state=0)
plain = prequential(no_fresh, iter_chunks(X, y, chunksize=100), classes=classes, verbose=0)
print(
    f"fresh heads that took over: {models['skocl defaults'].fresh_heads_}; prequential "
    f"accuracy without them: {plain.running():.3f}"
)

# %%
# ``drifts_`` holds the number of rows learned when the detector fired; without a
# ``fit`` before the stream, that is the position in the stream. ADWIN flags any change
# in the error rate, so the recovery after a drift (the error falling again) can be
# flagged too.
#
# The per-chunk records are a DataFrame away:

frame = results["skocl defaults"].to_frame()
print(frame.head())

# %%
# Accuracy against rows seen
# --------------------------
# :meth:`~skocl.stream.PrequentialResult.plot` draws the per-chunk and the running
# accuracy and marks the detected drifts; the true drifts and the run without
# detection are added with matplotlib. The first chunk, scored before anything was
# learned, has no accuracy.

import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7.5, 4))
results["skocl defaults"].plot(ax=ax, drifts=detected)
off = results["no drift detection"].to_frame()
ax.plot(off["rows_seen"], off["running_accuracy"], color="grey", label="running, no detection")
for i, d in enumerate(drifts):
    ax.axvline(d, color="black", lw=2, alpha=0.3, label="true drift" if i == 0 else None)
ax.set_ylim(0, 1)
ax.legend(loc="lower left", fontsize="small")
fig.tight_layout()
plt.show()

# %%
# Each true drift costs accuracy at once, with or without detection. The difference
# is in what follows: without detection the replay memory keeps rehearsing rows
# labelled by the old concept and the model settles below where it was; with
# detection those rows leave the memory and accuracy climbs back. The mean per-chunk
# accuracy between the drifts (the first 600 rows after each drift left out) shows it:

bounds = [0, *drifts.tolist(), len(y)]
for name, result in results.items():
    per_chunk = result.to_frame()
    means = []
    for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        start += 600 if k else 0
        inside = (per_chunk["rows_seen"] > start) & (per_chunk["rows_seen"] <= stop)
        means.append(f"{per_chunk.loc[inside, 'accuracy'].mean():.3f}")
    print(f"{name:>20}: concepts 1, 2, 3: {', '.join(means)}")
