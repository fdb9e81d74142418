"""
Training on a GPU, serving on CPUs
==================================

Train :class:`~skocl.OnlineFineTuneClassifier` on the GPU when there is one
(``device="auto"``: CUDA when available, the CPU otherwise), save it with
:func:`skocl.save`, load it back with :func:`skocl.load` on the CPU and predict over a
dask Array with :func:`skocl.dask.predict_dask`, as CPU workers would.

On the GPU live the network, the optimizers' states and the replay memory; each call
copies its rows there and brings the predictions back. ``skocl.load`` keeps the saved
device when it is available and falls back to the CPU otherwise, so the file loads
anywhere. A pickled GPU model does not (unpickling needs CUDA): load from the file
before sending the model to CPU workers.

Run it with ``python examples/dask_gpu_fallback.py``, with or without a GPU (it needs
``dask[array]``).
"""

import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
from sklearn.datasets import load_digits

import skocl
from skocl.dask import predict_dask

X, y = load_digits(return_X_y=True)
X = X / 16.0

clf = skocl.OnlineFineTuneClassifier(
    hidden_layer_sizes=(128,), device="auto", drift_detector=None, random_state=0
)
for start in range(0, 1400, 200):  # the stream, in chunks
    clf.partial_fit(X[start : start + 200], y[start : start + 200], classes=np.arange(10))
print(f"trained on {clf.device_}; weights on {next(clf.module_.parameters()).device}")

with tempfile.TemporaryDirectory() as tmp:
    path = skocl.save(clf, Path(tmp) / "digits.skocl")
    served = skocl.load(path, device="cpu")  # device=None: the GPU when there is one
print(f"loaded on {served.device_}")

test = da.from_array(X[1400:], chunks=(100, 64))
labels = predict_dask(served, test).compute()
same = bool((labels == clf.predict(X[1400:])).all())
print(f"accuracy {np.mean(labels == y[1400:]):.3f}; same labels as the trained model: {same}")
