"""
Grid search on a dask cluster
=============================

Search the learning rate and width of :class:`~skocl.OnlineFineTuneClassifier` with
scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`, its fits spread over the
workers of a ``dask.distributed`` cluster through joblib's ``"dask"`` backend.

Here the cluster is a ``LocalCluster`` of two worker processes on this machine; the
same code runs on a real cluster given its scheduler's address (``Client("tcp://...")``).
:func:`skocl.dask.limit_torch_threads` gives each torch computation on the workers one
thread, so that the workers do not compete for the cores.

This script starts processes, so it is not run when the documentation is built:
``python examples/dask_search_local_cluster.py`` (it needs ``dask[distributed]``).
"""

import time
import warnings

import joblib
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from skocl import OnlineFineTuneClassifier
from skocl.dask import limit_torch_threads


def main():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    search = GridSearchCV(
        OnlineFineTuneClassifier(max_iter=20, drift_detector=None, random_state=0),
        {"lr": [1e-3, 1e-2], "hidden_layer_sizes": [(32,), (128,)]},
        cv=3,
    )

    # Worker processes with one task thread each; the `with` closes them at the end.
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        limit_torch_threads(client, n=1)
        print(f"{len(client.scheduler_info()['workers'])} workers")
        start = time.perf_counter()
        # max_iter=20 stops fit before the loss settles: the warnings say so, on the
        # workers (shown in their logs) and for the refit here.
        with joblib.parallel_config(backend="dask"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y)
        seconds = time.perf_counter() - start

    print(f"{len(search.cv_results_['params'])} candidates x 3 folds in {seconds:.1f} s")
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"  {params}: accuracy {score:.3f}")
    print(f"best: {search.best_params_} ({search.best_score_:.3f})")


# Worker processes import this file again: the guard keeps them from starting clusters.
if __name__ == "__main__":
    main()
