r"""Continual-learning metrics computed from an accuracy matrix.

A model learns tasks :math:`0, \dots, T-1` one after the other. After training on
task :math:`i` it is scored on the held-out set of every task :math:`j`, seen or not;
the scores form the matrix

.. math::

    R_{i,j} = \text{score on task } j \text{ after training on task } i,
    \qquad R \in \mathbb{R}^{T \times T}.

:func:`evaluate_tasks` gives one row of :math:`R`; stacking the rows gives the matrix,
from which :func:`average_accuracy`, :func:`forgetting`, :func:`backward_transfer` and
:func:`forward_transfer` compute the usual summaries. Rows are indexed from zero, as
in numpy; the papers count from one.

The definitions follow Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual
Learning" (NeurIPS 2017) and Chaudhry et al., "Riemannian Walk for Incremental
Learning" (ECCV 2018); each function cites its source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import accuracy_score

__all__ = [
    "average_accuracy",
    "backward_transfer",
    "evaluate_tasks",
    "forgetting",
    "forward_transfer",
    "score_outputs",
]


def _check_matrix(R: ArrayLike, *, min_tasks: int, func: str) -> np.ndarray:
    """Return ``R`` as a float array after checking it is a finite (T, T) matrix."""
    try:
        R = np.asarray(R, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{func}: R must be a 2-D numeric array; got {exc}") from exc
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(
            f"{func}: R must be a square 2-D array of shape (T, T), one row per training "
            f"stage and one column per task; got shape {R.shape}."
        )
    T = R.shape[0]
    if T < min_tasks:
        # Forgetting and transfer compare a task's score across two stages, so a single
        # task leaves nothing to compare.
        raise ValueError(
            f"{func}: needs at least {min_tasks} task{'s' if min_tasks > 1 else ''}, "
            f"that is R of shape ({min_tasks}, {min_tasks}) or larger; got shape {R.shape}."
        )
    if not np.isfinite(R).all():
        # A NaN usually means a task was never scored; averaging it away would report a
        # number computed over fewer tasks than the caller thinks.
        bad = [tuple(int(k) for k in idx) for idx in np.argwhere(~np.isfinite(R))]
        raise ValueError(f"{func}: R must be finite; non-finite entries at {bad[:5]}.")
    return R


def score_outputs(
    estimator: Any,
    X: ArrayLike,
    y: ArrayLike,
    metric: Callable[[ArrayLike, ArrayLike], float] = accuracy_score,
) -> np.ndarray:
    """Score each output of a multi-output classifier on its own.

    A model of several tasks (``y`` of shape ``(n_samples, n_outputs)``, one column per
    task) predicts a label per task; this scores column ``t`` of ``predict(X)`` against
    column ``t`` of ``y`` over the rows that carry a label there (a missing label, NaN
    or None, is not scored).

    Parameters
    ----------
    estimator : object
        A fitted estimator whose ``predict`` returns ``(n_samples, n_outputs)``.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples, n_outputs)
        True labels, missing ones as NaN (float arrays) or None (object arrays).
    metric : callable, default=sklearn.metrics.accuracy_score
        ``metric(y_true, y_pred)`` of one output.

    Returns
    -------
    scores : ndarray of shape (n_outputs,)
        NaN for an output that no row labels.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> from skocl.metrics import score_outputs
    >>> X = np.zeros((4, 1))
    >>> Y = np.array([[1, 0], [1, 1], [1, 0], [1, 0]])
    >>> model = DummyClassifier(strategy="most_frequent").fit(X, Y)
    >>> score_outputs(model, X, np.array([[1, 0], [0, 1], [1, np.nan], [1, 0]]))
    array([0.75      , 0.66666667])
    """
    from ._validation import missing_labels, present, task_columns

    pred = np.asarray(estimator.predict(X))
    columns = task_columns(y, pred.shape[0])
    if pred.ndim != 2 or pred.shape[1] != len(columns):
        raise ValueError(
            f"score_outputs: y has {len(columns)} columns but predict gives shape "
            f"{pred.shape}: one column per output is needed."
        )
    scores = np.full(len(columns), np.nan)
    for t, column in enumerate(columns):
        labelled = ~missing_labels(column)
        if labelled.any():
            scores[t] = metric(present(column, t), pred[labelled, t])
    return scores


def evaluate_tasks(
    estimator: Any,
    tasks: Sequence[tuple[ArrayLike, ArrayLike]],
    metric: Callable[[ArrayLike, ArrayLike], float] = accuracy_score,
    output: int | None = None,
) -> np.ndarray:
    """Score a fitted estimator on the held-out set of every task.

    Call it after training on each task and stack the rows to build the accuracy
    matrix ``R``: ``R[i, j]`` is the score on task ``j`` after training on task ``i``.
    Tasks not yet trained on are scored too; their entries above the diagonal are what
    :func:`forward_transfer` reads.

    Parameters
    ----------
    estimator : object
        A fitted estimator with a ``predict`` method.
    tasks : sequence of (X, y) pairs
        The held-out set of each task, in the order the tasks are learned.
    metric : callable, default=sklearn.metrics.accuracy_score
        ``metric(y_true, y_pred)`` returning a float. Use a score where higher is
        better: the summaries read a fall in ``R`` as forgetting.
    output : int, default=None
        Of a multi-output estimator (one that learns several tasks, ``y`` with a
        column per task): score column ``output`` only (:func:`score_outputs`), so that
        the summaries report forgetting per output.

    Returns
    -------
    row : ndarray of shape (n_tasks,)
        ``metric(y_j, estimator.predict(X_j))`` for each task ``j``.

    See Also
    --------
    average_accuracy, forgetting, backward_transfer, forward_transfer

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> from skocl.metrics import evaluate_tasks
    >>> X = np.zeros((4, 1))
    >>> model = DummyClassifier(strategy="constant", constant=1).fit(X, [0, 1, 1, 1])
    >>> tasks = [(X, [1, 1, 1, 1]), (X, [0, 0, 1, 1])]
    >>> evaluate_tasks(model, tasks)
    array([1. , 0.5])
    """
    if len(tasks) == 0:
        raise ValueError("evaluate_tasks: tasks is empty; pass one (X_test, y_test) per task.")
    row = np.empty(len(tasks), dtype=float)
    for j, task in enumerate(tasks):
        try:
            X, y = task
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"evaluate_tasks: tasks[{j}] must be an (X_test, y_test) pair."
            ) from exc
        if output is None:
            row[j] = metric(y, estimator.predict(X))
        else:
            row[j] = score_outputs(estimator, X, y, metric)[output]
    return row


def _check_upto(upto: int | None, T: int) -> int:
    if upto is None:
        return T - 1
    if isinstance(upto, bool) or not isinstance(upto, (int, np.integer)):
        raise TypeError(f"average_accuracy: upto must be an int or None; got {upto!r}.")
    if not 0 <= upto < T:
        raise ValueError(f"average_accuracy: upto must be in [0, {T - 1}] for T={T}; got {upto}.")
    return int(upto)


def average_accuracy(R: ArrayLike, upto: int | None = None) -> float:
    r"""Mean score over the tasks seen so far, after training on the last of them.

    .. math::

        A_i = \frac{1}{i+1} \sum_{j=0}^{i} R_{i,j}, \qquad
        \text{by default } i = T-1: \; A_{T-1} = \frac{1}{T} \sum_{j=0}^{T-1} R_{T-1,j}.

    This is the average accuracy :math:`A_T` of Chaudhry et al. (2018) [1]_, the ACC of
    Lopez-Paz & Ranzato (2017) [2]_.

    Parameters
    ----------
    R : array-like of shape (T, T)
        ``R[i, j]`` is the score on task ``j`` after training on task ``i``.
    upto : int, default=None
        The training stage ``i``: average row ``i`` over tasks ``0..i``, the tasks seen
        by then. ``None`` means the last stage, ``T - 1``.

    Returns
    -------
    float
        The average score.

    See Also
    --------
    forgetting, backward_transfer, evaluate_tasks

    References
    ----------
    .. [1] A. Chaudhry, P. K. Dokania, T. Ajanthan and P. H. S. Torr, "Riemannian Walk
       for Incremental Learning: Understanding Forgetting and Intransigence", ECCV 2018.
    .. [2] D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
       Learning", NeurIPS 2017.

    Examples
    --------
    >>> from skocl.metrics import average_accuracy
    >>> R = [[0.9, 0.1, 0.0],
    ...      [0.5, 0.8, 0.2],
    ...      [0.4, 0.6, 0.7]]
    >>> round(average_accuracy(R), 4)  # (0.4 + 0.6 + 0.7) / 3
    0.5667
    >>> round(average_accuracy(R, upto=1), 4)  # (0.5 + 0.8) / 2
    0.65
    """
    R = _check_matrix(R, min_tasks=1, func="average_accuracy")
    i = _check_upto(upto, R.shape[0])
    return float(R[i, : i + 1].mean())


def forgetting(R: ArrayLike, per_task: bool = False) -> float | np.ndarray:
    r"""How far each earlier task has fallen from its best score, on average.

    For every task but the last, forgetting is the drop from the best score reached
    at any earlier training stage to the final score:

    .. math::

        f_j = \max_{l \in \{0, \dots, T-2\}} R_{l,j} - R_{T-1,j}, \qquad
        F = \frac{1}{T-1} \sum_{j=0}^{T-2} f_j.

    This is the forgetting measure of Chaudhry et al. (2018) [1]_. It is negative for a
    task whose final score beats every earlier one.

    Parameters
    ----------
    R : array-like of shape (T, T)
        ``R[i, j]`` is the score on task ``j`` after training on task ``i``; ``T >= 2``.
    per_task : bool, default=False
        Return the vector :math:`f_0, \dots, f_{T-2}` instead of its mean.

    Returns
    -------
    float or ndarray of shape (T - 1,)
        The mean forgetting :math:`F`, or the per-task values when ``per_task=True``.

    See Also
    --------
    backward_transfer : The drop from the score just after learning a task.

    References
    ----------
    .. [1] A. Chaudhry, P. K. Dokania, T. Ajanthan and P. H. S. Torr, "Riemannian Walk
       for Incremental Learning: Understanding Forgetting and Intransigence", ECCV 2018.

    Examples
    --------
    >>> from skocl.metrics import forgetting
    >>> R = [[0.9, 0.1, 0.0],
    ...      [0.5, 0.8, 0.2],
    ...      [0.4, 0.6, 0.7]]
    >>> forgetting(R, per_task=True)  # [0.9 - 0.4, 0.8 - 0.6]
    array([0.5, 0.2])
    >>> round(forgetting(R), 4)
    0.35
    """
    R = _check_matrix(R, min_tasks=2, func="forgetting")
    f = R[:-1, :-1].max(axis=0) - R[-1, :-1]
    return f if per_task else float(f.mean())


def backward_transfer(R: ArrayLike) -> float:
    r"""Mean change in each earlier task's score from just after learning it to the end.

    .. math::

        \mathrm{BWT} = \frac{1}{T-1} \sum_{j=0}^{T-2} \left( R_{T-1,j} - R_{j,j} \right).

    This is the backward transfer of Lopez-Paz & Ranzato (2017) [1]_: negative when
    later tasks erase earlier ones, positive when they help.

    Parameters
    ----------
    R : array-like of shape (T, T)
        ``R[i, j]`` is the score on task ``j`` after training on task ``i``; ``T >= 2``.

    Returns
    -------
    float
        The backward transfer.

    See Also
    --------
    forgetting : The drop from the best earlier score rather than the diagonal.
    forward_transfer

    References
    ----------
    .. [1] D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
       Learning", NeurIPS 2017.

    Examples
    --------
    >>> from skocl.metrics import backward_transfer
    >>> R = [[0.9, 0.1, 0.0],
    ...      [0.5, 0.8, 0.2],
    ...      [0.4, 0.6, 0.7]]
    >>> round(backward_transfer(R), 4)  # ((0.4 - 0.9) + (0.6 - 0.8)) / 2
    -0.35
    """
    R = _check_matrix(R, min_tasks=2, func="backward_transfer")
    return float((R[-1, :-1] - np.diag(R)[:-1]).mean())


def forward_transfer(R: ArrayLike, baseline: ArrayLike) -> float:
    r"""Mean gain on each task, before training on it, over a model at initialisation.

    .. math::

        \mathrm{FWT} = \frac{1}{T-1} \sum_{j=1}^{T-1} \left( R_{j-1,j} - b_j \right),

    where :math:`b_j` is the score on task :math:`j` of the model at random
    initialisation. This is the forward transfer of Lopez-Paz & Ranzato (2017) [1]_.

    Parameters
    ----------
    R : array-like of shape (T, T)
        ``R[i, j]`` is the score on task ``j`` after training on task ``i``; ``T >= 2``.
    baseline : array-like of shape (T,)
        The score :math:`b_j` on each task before any training, for instance
        :func:`evaluate_tasks` on the freshly initialised model. ``baseline[0]`` is
        not used but is part of the vector, so that it lines up with the columns of
        ``R``.

    Returns
    -------
    float
        The forward transfer.

    See Also
    --------
    backward_transfer, evaluate_tasks

    References
    ----------
    .. [1] D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual
       Learning", NeurIPS 2017.

    Examples
    --------
    >>> from skocl.metrics import forward_transfer
    >>> R = [[0.9, 0.1, 0.0],
    ...      [0.5, 0.8, 0.2],
    ...      [0.4, 0.6, 0.7]]
    >>> b = [0.1, 0.0, 0.1]
    >>> round(forward_transfer(R, b), 4)  # ((0.1 - 0.0) + (0.2 - 0.1)) / 2
    0.1
    """
    R = _check_matrix(R, min_tasks=2, func="forward_transfer")
    T = R.shape[0]
    try:
        b = np.asarray(baseline, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"forward_transfer: baseline must be a 1-D numeric array; {exc}") from exc
    if b.shape != (T,):
        raise ValueError(
            f"forward_transfer: baseline must have shape ({T},), one score per task of R "
            f"of shape {R.shape}; got shape {b.shape}."
        )
    if not np.isfinite(b).all():
        raise ValueError(
            f"forward_transfer: baseline must be finite; non-finite entries at "
            f"{np.flatnonzero(~np.isfinite(b)).tolist()}."
        )
    # R[j-1, j] for j = 1..T-1 is the first superdiagonal.
    return float((np.diag(R, k=1) - b[1:]).mean())
