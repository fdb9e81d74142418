"""
Streaming a CSV file, with checkpoints
======================================

Read a CSV file in chunks with :func:`skocl.stream.open_stream`, learn it
test-then-train with a :func:`~skocl.make_stream_pipeline` of a ``StandardScaler`` and
an :class:`~skocl.OnlineFineTuneClassifier`, survive an interruption with a
checkpoint, and save the model without pickle.

Memory stays bounded by the chunk however large the file is, and the scaler keeps
learning alongside the classifier (see :ref:`streaming`).
"""

# %%
# A CSV file
# ----------
# :func:`skocl.datasets.make_drift_stream` generates 4,000 rows of six sensor readings
# with a label that changes meaning half-way. They are written to a temporary CSV file
# with text labels and an offset and a scale that call for standardisation.

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler

import skocl
from skocl import OnlineFineTuneClassifier, make_stream_pipeline
from skocl.datasets import make_drift_stream
from skocl.stream import open_stream, prequential

# A network this small runs fastest on one thread; more only add synchronisation.
torch.set_num_threads(1)

X, y, drifts = make_drift_stream(4000, 6, 3, drift_points=(0.5,), random_state=0)
workdir = Path(tempfile.mkdtemp())
csv_path = workdir / "sensors.csv"
frame = pd.DataFrame(20 * X + 100, columns=[f"sensor_{i}" for i in range(6)])
frame["label"] = np.array(["low", "mid", "high"])[y]
frame.to_csv(csv_path, index=False, float_format="%.3f")
print(csv_path.read_text().splitlines()[:3])

# %%
# Reading it in chunks
# --------------------
# The stream is lazy: nothing is read until it is iterated. Each chunk is a
# :class:`~skocl.stream.StreamChunk` with float64 features, the labels and the lines of
# the file they come from (the header is line 1).

stream = open_stream(csv_path, target="label", chunksize=200)
chunk = next(stream)
print(chunk.X.shape, chunk.y[:3], chunk.source == str(csv_path), chunk.first_line)
print(stream.features)
stream.close()

# %%
# An interrupted run
# ------------------
# :func:`~skocl.stream.prequential` scores each chunk, then learns from it, and with
# ``checkpoint=`` saves the model and the stream position every ``checkpoint_every``
# chunks and at the end. To stand in for a job killed part-way, ``on_chunk`` (called
# with each chunk's record) stops the first run in its 8th chunk of 20, after the
# checkpoint of chunk 5.


class Killed(Exception):
    """Stands in for a job killed part-way."""


def kill_in_chunk_8(record):
    if record["chunk"] == 7:
        raise Killed(f"killed after {record['chunk'] + 1} chunks")


def new_model():
    return make_stream_pipeline(StandardScaler(), OnlineFineTuneClassifier(random_state=0))


checkpoint = workdir / "run.skocl"
try:
    prequential(
        new_model(),
        open_stream(csv_path, target="label", chunksize=200),
        checkpoint=checkpoint,
        checkpoint_every=5,
        on_chunk=kill_in_chunk_8,
        verbose=0,
    )
except Killed as exc:
    print(f"{exc}; the checkpoint holds the first 5")

# %%
# Resuming
# --------
# The same call with ``resume=True`` loads the model from the checkpoint, reads past
# the chunks it had learned and goes on. The result is the one an uninterrupted run
# gives, bit for bit, as the run below without checkpoints shows.

result = prequential(
    new_model(),
    open_stream(csv_path, target="label", chunksize=200),
    checkpoint=checkpoint,
    checkpoint_every=5,
    resume=True,
    verbose=0,
)
model = result.estimator  # the resumed model
uninterrupted = prequential(
    new_model(), open_stream(csv_path, target="label", chunksize=200), verbose=0
)
features = frame.drop(columns="label")  # the columns by name, as the model learned them
same = np.array_equal(
    model.predict_proba(features), uninterrupted.estimator.predict_proba(features)
)
print(f"resumed: {len(result.records)} chunks, running accuracy {result.running():.3f}")
print(f"same model as the uninterrupted run: {same}")

# %%
# Saving and loading
# ------------------
# :func:`skocl.save` writes a zip of JSON metadata, tensors (read back with
# ``torch.load(weights_only=True)``) and the scaler (read back with skops); no pickle
# is involved, and :func:`skocl.load` returns a pipeline ready to predict or to keep
# learning.

model_path = skocl.save(model, workdir / "sensors.skocl")
loaded = skocl.load(model_path)
print(loaded)
print(
    f"{model_path.stat().st_size / 1e3:.0f} kB; predictions equal: "
    f"{np.array_equal(loaded.predict(features), model.predict(features))}"
)

# %%
# Learning curve
# --------------
# The records of the resumed run cover the whole stream. Per-chunk and running
# accuracy against the rows seen; the label changes meaning at the dashed line.

import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 3.8))
result.plot(ax=ax)
ax.axvline(drifts[0], color="black", ls=":", label="concept change")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

print(result.to_frame().tail())
