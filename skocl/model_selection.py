"""Model selection for online learners: tune the settings that only ``partial_fit`` uses.

:class:`~sklearn.model_selection.GridSearchCV` and
:func:`~sklearn.model_selection.cross_val_score` call ``fit``. For an online learner,
``fit`` is the offline pretraining, so a grid over settings that only ``partial_fit``
reads (``trunk_lr``, ``head_lr``, ``head_steps``, ``memory_size`` of
:class:`~skocl.OnlineFineTuneClassifier`) scores every candidate the same.
:class:`StreamedFit` makes ``fit`` the whole life of a deployed model: pretrain on the
first rows, then learn from the rest chunk by chunk, in order. A search over it then
compares the online settings, and its best estimator keeps learning.
:func:`make_prequential_scorer` scores a held-out stretch the way a deployed model meets
it: each chunk is predicted, then learned (test, then train).
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _num_samples, check_is_fitted

__all__ = ["StreamedFit", "make_prequential_scorer"]


def _sliceable(data):
    """``data`` in a form ``_safe_indexing`` can slice by rows."""
    if data is None:
        return None
    if sparse.issparse(data):
        return data if data.format in ("csr", "csc") else data.tocsr()
    if hasattr(data, "iloc") or isinstance(data, (np.ndarray, list)):
        return data
    return np.asarray(data)


def _estimator_has(attr: str):
    """The fitted ``estimator_`` when there is one, else ``estimator``, has ``attr``."""

    def check(self) -> bool:
        inner = getattr(self, "estimator_", self.estimator)
        getattr(inner, attr)
        return True

    return check


class StreamedFit(MetaEstimatorMixin, BaseEstimator):
    """Fit an online learner as it would live deployed: pretrain, then stream the rest.

    ``fit(X, y)`` fits a clone of ``estimator`` on the first ``pretrain_size`` rows,
    then passes the remaining rows, **in their order**, to its ``partial_fit`` in
    chunks of ``chunk_size``. Searches and cross-validation that call ``fit``
    (:class:`~sklearn.model_selection.GridSearchCV`,
    :func:`~sklearn.model_selection.cross_val_score`) thereby exercise the online
    settings, reachable as ``estimator__<name>``. ``predict``, ``predict_proba``,
    ``decision_function``, ``score`` and ``partial_fit`` delegate to the fitted
    clone, so a search's best estimator keeps learning.

    Parameters
    ----------
    estimator : estimator with fit and partial_fit
        The online learner, e.g. :class:`~skocl.OnlineFineTuneClassifier` or a
        :class:`~skocl.StreamPipeline`. It is cloned, never fitted itself.
    pretrain_size : float or int, default=0.5
        The rows ``fit`` pretrains on: a share of the rows if a float in
        ``[0, 1]`` (rounded up), a number of rows if an int. ``0`` pretrains on
        nothing: every row then goes through ``partial_fit``, and a classifier gets
        ``classes=np.unique(y)`` on its first call. ``1.0`` is a plain ``fit``.
    chunk_size : int, default=256
        Rows per ``partial_fit`` call after the pretraining.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone of ``estimator``.
    n_pretrain_ : int
        Rows ``fit`` pretrained on.
    n_chunks_ : int
        ``partial_fit`` calls ``fit`` made after pretraining.
    classes_ : ndarray of shape (n_classes,)
        The classes of ``estimator_``, when it is a classifier (they can grow with
        ``partial_fit``).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen in ``fit``, when ``estimator_`` records them.

    See Also
    --------
    make_prequential_scorer : Score held-out rows test-then-train, as deployed.
    skocl.stream.prequential : Test-then-train over a stream of chunks.

    Notes
    -----
    Rows are taken in the order given: the stream is the data's own order, so with
    time-ordered data use a splitter that keeps order, such as
    :class:`~sklearn.model_selection.TimeSeriesSplit` or ``KFold`` without
    shuffling. (``cross_val_score`` on a classifier uses ``StratifiedKFold``, which
    keeps the order within each fold.)

    A classifier pretrained on a share that lacks some classes meets them in the
    stream: :class:`~skocl.OnlineFineTuneClassifier` grows its head for them; an
    estimator whose ``partial_fit`` only knows the classes of its ``fit`` (such as
    ``SGDClassifier``) raises. Use ``pretrain_size=0`` for those.

    ``sample_weight``, when given to ``fit``, is sliced with the rows and passed to
    the pretraining ``fit`` and to every ``partial_fit``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
    >>> from skocl import OnlineFineTuneClassifier
    >>> from skocl.model_selection import StreamedFit
    >>> X, y = load_digits(return_X_y=True)
    >>> X, y = X[:600] / 16, y[:600]
    >>> clf = OnlineFineTuneClassifier(
    ...     hidden_layer_sizes=(32,), tol=0.02, n_iter_no_change=3, random_state=0
    ... )
    >>> model = StreamedFit(
    ...     clf,
    ...     pretrain_size=0.3, chunk_size=50,
    ... )
    >>> search = GridSearchCV(
    ...     model, {"estimator__head_steps": [1, 5]}, cv=TimeSeriesSplit(n_splits=2)
    ... ).fit(X, y)
    >>> scores = search.cv_results_["mean_test_score"]
    >>> bool(scores[0] != scores[1])
    True
    >>> best = search.best_estimator_.partial_fit(X[:50], y[:50])  # keeps learning
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "partial_fit"])],
        "pretrain_size": [
            Interval(Real, 0, 1, closed="both"),
            Interval(Integral, 0, None, closed="left"),
        ],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, estimator, *, pretrain_size=0.5, chunk_size=256):
        self.estimator = estimator
        self.pretrain_size = pretrain_size
        self.chunk_size = chunk_size

    def _n_pretrain(self, n: int) -> int:
        if isinstance(self.pretrain_size, Integral) and not isinstance(self.pretrain_size, bool):
            return min(int(self.pretrain_size), n)
        return min(math.ceil(self.pretrain_size * n), n)

    @_fit_context(
        # the inner estimator's parameters are validated by its own fit
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y=None, sample_weight=None):
        """Pretrain a clone of ``estimator`` on the first rows, then stream the rest.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The rows, in stream order.
        y : array-like of shape (n_samples,), default=None
            Their targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights, sliced with the rows for ``fit`` and each ``partial_fit``.

        Returns
        -------
        self : object
            The fitted meta-estimator.
        """
        X, y, sample_weight = _sliceable(X), _sliceable(y), _sliceable(sample_weight)
        n = _num_samples(X)
        if n == 0:
            raise ValueError("StreamedFit.fit got 0 samples; it needs at least one row.")
        if y is not None and _num_samples(y) != n:
            raise ValueError(f"X has {n} rows but y has {_num_samples(y)}.")
        if sample_weight is not None and _num_samples(sample_weight) != n:
            raise ValueError(f"sample_weight has {_num_samples(sample_weight)} rows, X has {n}.")
        estimator = clone(self.estimator)
        n_pre = self._n_pretrain(n)

        def part(data, sl):
            return None if data is None else _safe_indexing(data, sl)

        def weights(sl):
            return {} if sample_weight is None else {"sample_weight": part(sample_weight, sl)}

        first = {}
        if n_pre > 0:
            estimator.fit(
                part(X, slice(0, n_pre)), part(y, slice(0, n_pre)), **weights(slice(0, n_pre))
            )
        elif is_classifier(estimator) and y is not None:
            first = {"classes": np.unique(np.asarray(y))}
        n_chunks = 0
        for start in range(n_pre, n, self.chunk_size):
            sl = slice(start, min(start + self.chunk_size, n))
            estimator.partial_fit(part(X, sl), part(y, sl), **first, **weights(sl))
            first = {}
            n_chunks += 1
        self.estimator_ = estimator
        self.n_pretrain_ = n_pre
        self.n_chunks_ = n_chunks
        return self

    def partial_fit(self, X, y=None, **params):
        """Learn from one more chunk with the fitted clone's ``partial_fit``.

        Before any ``fit``, the first call clones ``estimator`` and starts it with
        ``partial_fit`` (pass ``classes`` then, as for any classifier).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The chunk.
        y : array-like of shape (n_samples,), default=None
            Its targets.
        **params : dict
            Passed to the estimator's ``partial_fit`` (``classes``,
            ``sample_weight``, ...).

        Returns
        -------
        self : object
            The updated meta-estimator.
        """
        if not hasattr(self, "estimator_"):
            self._validate_params()
            estimator = clone(self.estimator)
            estimator.partial_fit(X, y, **params)
            self.estimator_ = estimator
            self.n_pretrain_ = 0
            self.n_chunks_ = 1
            return self
        self.estimator_.partial_fit(X, y, **params)
        self.n_chunks_ += 1
        return self

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the fitted clone.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The rows.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predictions.
        """
        check_is_fitted(self)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the fitted clone.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The rows.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            The probabilities, columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the fitted clone.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The rows.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            The log probabilities.
        """
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the fitted clone.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The rows.

        Returns
        -------
        scores : ndarray
            The decision values.
        """
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    @available_if(_estimator_has("score"))
    def score(self, X, y, sample_weight=None):
        """Score of the fitted clone (accuracy for a classifier).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The rows.
        y : array-like of shape (n_samples,)
            Their targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        score : float
            The estimator's ``score``.
        """
        check_is_fitted(self)
        if sample_weight is None:
            return self.estimator_.score(X, y)
        return self.estimator_.score(X, y, sample_weight=sample_weight)

    @property
    def classes_(self):
        """The classes of the fitted clone."""
        check_is_fitted(self)
        return self.estimator_.classes_

    @property
    def n_features_in_(self):
        """Number of features seen in ``fit``."""
        check_is_fitted(self)
        return self.estimator_.n_features_in_

    @property
    def feature_names_in_(self):
        """Names of the features seen in ``fit``, when the clone records them."""
        check_is_fitted(self)
        return self.estimator_.feature_names_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = copy.deepcopy(inner.classifier_tags)
        tags.regressor_tags = copy.deepcopy(inner.regressor_tags)
        tags.target_tags = copy.deepcopy(inner.target_tags)
        tags.input_tags = copy.deepcopy(inner.input_tags)
        tags.non_deterministic = inner.non_deterministic
        return tags


class _PrequentialScorer:
    """Score held-out rows test-then-train on a copy of a fitted estimator."""

    def __init__(self, scoring, chunk_size):
        self.scoring = scoring
        self.chunk_size = chunk_size

    def __call__(self, estimator, X, y, sample_weight=None):
        check_is_fitted(estimator)
        size = self.chunk_size or getattr(estimator, "chunk_size", None) or 256
        X, y, sample_weight = _sliceable(X), _sliceable(y), _sliceable(sample_weight)
        n = _num_samples(X)
        if n == 0:
            raise ValueError("make_prequential_scorer: no rows to score.")
        # Learning from the held-out rows must not reach the caller's estimator.
        model = copy.deepcopy(estimator)
        base = check_scoring(model, scoring=self.scoring)
        total, rows = 0.0, 0
        for start in range(0, n, size):
            sl = slice(start, min(start + size, n))
            Xc, yc = _safe_indexing(X, sl), _safe_indexing(y, sl)
            kw = (
                {}
                if sample_weight is None
                else {"sample_weight": _safe_indexing(sample_weight, sl)}
            )
            total += float(base(model, Xc, yc, **kw)) * (sl.stop - sl.start)
            rows += sl.stop - sl.start
            model.partial_fit(Xc, yc, **kw)
        return total / rows

    def __repr__(self) -> str:
        return f"make_prequential_scorer(scoring={self.scoring!r}, chunk_size={self.chunk_size!r})"


def make_prequential_scorer(scoring=None, *, chunk_size=None):
    """A scorer that meets held-out rows as a deployed model would: test, then train.

    The scorer ``scorer(estimator, X, y)`` deep-copies the fitted estimator, then
    for each chunk of ``X`` in order scores the copy on it and learns from it with
    ``partial_fit``. It returns the mean of the chunk scores weighted by their rows
    (for accuracy: the accuracy over all rows, each predicted before it was
    learned). The estimator passed in is never changed.

    Use it as ``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV` or
    :func:`~sklearn.model_selection.cross_val_score`, with a splitter that keeps
    order such as :class:`~sklearn.model_selection.TimeSeriesSplit`: the test fold
    is then the stretch of stream after the training rows, and the score says how
    well the model keeps up with it while learning, which is what the online
    settings change.

    Parameters
    ----------
    scoring : str or callable, default=None
        The per-chunk metric, a scorer name (``"accuracy"``, ``"neg_log_loss"``,
        ...) or a scorer callable; None uses the estimator's ``score``.
    chunk_size : int, default=None
        Rows per chunk; None takes the estimator's ``chunk_size`` (a
        :class:`StreamedFit`'s), else 256.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y, sample_weight=None) -> float``.

    See Also
    --------
    StreamedFit : Fit as pretraining then streaming, for searches.
    skocl.stream.prequential : The same evaluation over a stream of chunks, with a
        per-chunk record.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import TimeSeriesSplit, cross_val_score
    >>> from skocl import OnlineFineTuneClassifier
    >>> from skocl.model_selection import StreamedFit, make_prequential_scorer
    >>> X, y = load_digits(return_X_y=True)
    >>> X, y = X[:600] / 16, y[:600]
    >>> clf = OnlineFineTuneClassifier(
    ...     hidden_layer_sizes=(32,), tol=0.02, n_iter_no_change=3, random_state=0
    ... )
    >>> model = StreamedFit(
    ...     clf,
    ...     pretrain_size=0.5, chunk_size=50,
    ... )
    >>> scores = cross_val_score(model, X, y, cv=TimeSeriesSplit(n_splits=2),
    ...                          scoring=make_prequential_scorer("accuracy"))
    >>> scores.shape
    (2,)
    """
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, Integral) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}.")
    return _PrequentialScorer(scoring, chunk_size)
