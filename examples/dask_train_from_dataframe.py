"""
Training from a dask DataFrame
==============================

Train :class:`~skocl.OnlineFineTuneClassifier` from a dask DataFrame, one partition at
a time, with :func:`skocl.dask.partial_fit_dask`, then predict over another dask
DataFrame with :func:`skocl.dask.predict_dask`.

A dask DataFrame can be far larger than memory (``dd.read_parquet("data/*.parquet")``);
here it is scikit-learn's digits split into partitions, so that the script runs
anywhere. Each partition is computed, brought to this process and learned from with
``partial_fit`` before the next one is computed: this process holds one partition at a
time. Prediction runs where the partitions are, and returns a lazy dask Array.

Run it with ``python examples/dask_train_from_dataframe.py`` (it needs
``dask[dataframe]``); with a ``distributed.Client`` open, the partitions are computed on
its cluster.
"""

import dask.dataframe as dd
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

from skocl import OnlineFineTuneClassifier
from skocl.dask import partial_fit_dask, predict_dask

X, y = load_digits(return_X_y=True)
frame = pd.DataFrame(X / 16.0, columns=[f"pixel{i}" for i in range(64)]).assign(digit=y)
train = dd.from_pandas(frame.iloc[:1400], npartitions=7)  # 200 rows per partition
test = dd.from_pandas(frame.iloc[1400:].drop(columns="digit"), npartitions=2)
print(f"training on {train.npartitions} partitions, predicting {test.npartitions}")

clf = OnlineFineTuneClassifier(hidden_layer_sizes=(64,), random_state=0)
partial_fit_dask(clf, train, target="digit", classes=np.arange(10))
print(f"learned from {clf.n_samples_seen_} rows in {clf.n_iter_} partial_fit calls")

labels = predict_dask(clf, test)  # lazy: nothing is computed yet
print(f"lazy predictions: {labels!r}")
accuracy = float((labels.compute() == y[1400:]).mean())
print(f"accuracy on the {len(y) - 1400} held-out rows: {accuracy:.3f}")

proba = predict_dask(clf, test, "predict_proba")
print(f"mean predicted probability of each digit: {np.round(proba.mean(axis=0).compute(), 3)}")
