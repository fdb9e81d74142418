"""The estimator's side of several tasks (``y`` of shape ``(n_samples, n_tasks)``): a
chunk's labels checked and encoded per task, label sets and tasks that grow, and the
subset accuracy. The torch side is in ``_tasks.py``."""

from __future__ import annotations

import numpy as np
from sklearn.utils.multiclass import unique_labels

from ._validation import check_weights, encode_tasks, rows_right, task_columns


class TasksMixin:
    """Methods of :class:`~skocl.OnlineFineTuneClassifier` for a model of several
    tasks."""

    def _grow_tasks(self, local: np.ndarray, grown: list) -> np.ndarray:
        """Of several tasks: grow the label sets in ``grown`` (``(task, classes)``;
        a task past the known ones adds a head) and return the chunk's labels as global
        indices."""
        learner, classes = self.learner_, list(self.classes_)
        for t, new in grown:
            if t < len(classes):
                learner.grow(np.searchsorted(new, classes[t]), len(new), task=t)
                classes[t] = new
            else:
                learner.add_task(len(new))
                classes.append(new)
                self._fixed_classes = [*self._fixed_classes, False]
        self.classes_ = classes
        return learner.tasks.to_global(local)

    def _validate_task_chunk(self, X, y, classes, sample_weight):
        """:meth:`_validate_chunk` of a model of several tasks: ``y`` with a column per
        known task (more columns add tasks); returns task-local label indices and the
        label sets that grow."""
        X = self._check_X(X)
        n_tasks = len(self.classes_)
        columns = task_columns(y, X.shape[0]) if np.ndim(y) == 2 else None
        if columns is None or len(columns) < n_tasks:
            raise ValueError(
                f"y has shape {np.shape(y)}; this model learns {n_tasks} tasks: y needs a "
                f"column per task, shape (n_samples, {n_tasks}) or wider to add tasks (a "
                "missing label is NaN in a float array, None in an object array)."
            )
        if classes is not None:
            same = len(classes) >= n_tasks and all(
                np.array_equal(known, unique_labels(given))
                for known, given in zip(self.classes_, classes)
            )
            if not same:
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on last call to "
                    f"partial_fit, was: {self.classes_!r}"
                )
        local, grown = encode_tasks(self.classes_, columns, self._fixed_classes)
        if not (local >= 0).any():
            raise ValueError(
                "y has no label on any row of this chunk (every value is missing): it "
                "would teach nothing."
            )
        sw = check_weights(sample_weight, X, self._dtype)
        return X, local, sw, grown

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``(X, y)``; of several tasks, the subset accuracy.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Test samples.
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            True labels. Of several tasks, a row counts as right when every label it
            has is predicted (a missing label, NaN or None, is not scored, nor is a
            row without any), as ``MultiOutputClassifier.score`` counts rows with
            every label given.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.

        Returns
        -------
        score : float
        """
        if getattr(self, "learner_", None) is None or self.learner_.tasks is None:
            return super().score(X, y, sample_weight)
        pred = self.predict(X)
        columns = task_columns(y, pred.shape[0])
        if len(columns) != pred.shape[1]:
            raise ValueError(
                f"y has {len(columns)} columns; this model predicts {pred.shape[1]} tasks."
            )
        right, labelled = rows_right(pred, columns)
        if not labelled.any():
            raise ValueError("y has no label on any row: there is nothing to score.")
        weights = None if sample_weight is None else np.asarray(sample_weight)[labelled]
        return float(np.average(right[labelled], weights=weights))

    @property
    def n_outputs_(self) -> int:
        """Number of tasks (columns of ``y``): 1 for a model fitted on one."""
        return len(self.classes_) if isinstance(self.classes_, list) else 1
