"""Preprocessing that learns from a stream: categories that appear at any time.

scikit-learn's :class:`~sklearn.preprocessing.OneHotEncoder` learns its categories in
``fit`` and has no ``partial_fit``: in a stream, a category first seen later is never
learned. Its output width is the number of categories, which a network with a fixed
input layer could not follow anyway. :class:`OnlineOneHotEncoder` learns categories
chunk by chunk into a width fixed in advance.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["OnlineOneHotEncoder"]


def _key(value):
    """One key for every spelling of a missing value (None, NaN, pandas.NA, NaT)."""
    if value is None:
        return None
    try:
        if value != value:  # NaN and NaT are not equal to themselves
            return None
    except (TypeError, ValueError):  # pandas.NA refuses to be a bool
        return None
    return value


class OnlineOneHotEncoder(TransformerMixin, BaseEstimator):
    """One-hot encoding that learns new categories from every chunk, in a fixed width.

    Each input column gets ``max_categories`` output columns. Categories take them in
    the order they are first seen, by ``fit`` or by any later ``partial_fit``, so a
    category that first appears in the hundredth chunk gets its own column from then
    on. The last column of each input column is **other**: once the first
    ``max_categories - 1`` columns are taken, every further new category is encoded
    there. The output width never changes, so the network after the encoder keeps
    its input layer.

    Parameters
    ----------
    max_categories : int, default=32
        Output columns per input column, the last one for *other*. At least 2.

    Attributes
    ----------
    categories_ : list of ndarray of dtype object
        For each input column, its categories in the order of their output columns
        (at most ``max_categories - 1``). A missing value (None, NaN) is a category,
        listed as None.
    n_other_ : ndarray of shape (`n_features_in_`,) of int64
        Rows per input column whose category arrived after the column was full and
        went to *other*.
    n_samples_seen_ : int
        Rows learned from.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the input columns, when the input had them.

    See Also
    --------
    sklearn.preprocessing.OneHotEncoder : Learns its categories in ``fit`` only.
    sklearn.feature_extraction.FeatureHasher : Stateless hashing, for categories
        without bound (collisions instead of *other*).
    skocl.compose.StreamColumnTransformer : Apply it to the categorical columns only,
        with every part learning online.

    Notes
    -----
    A category not yet learned (seen by ``transform`` before any ``partial_fit``
    had it) is encoded as all zeros while its column still has room, and as *other*
    once the column is full. ``partial_fit`` checks the whole chunk before it
    changes anything.

    Examples
    --------
    >>> import numpy as np
    >>> from skocl.preprocessing import OnlineOneHotEncoder
    >>> enc = OnlineOneHotEncoder(max_categories=3)
    >>> enc = enc.partial_fit(np.array([["red"]], dtype=object))
    >>> enc.transform(np.array([["red"], ["blue"]], dtype=object))  # blue: not learned
    array([[1., 0., 0.],
           [0., 0., 0.]])
    >>> enc = enc.partial_fit(np.array([["blue"]], dtype=object))  # the column is full
    >>> enc.transform(np.array([["blue"], ["green"]], dtype=object))  # green: other
    array([[0., 1., 0.],
           [0., 0., 1.]])
    >>> enc.get_feature_names_out()
    array(['x0_red', 'x0_blue', 'x0_other'], dtype=object)
    """

    _parameter_constraints: dict = {"max_categories": [Interval(Integral, 2, None, closed="left")]}

    def __init__(self, max_categories=32):
        self.max_categories = max_categories

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Forget what was learned, then learn the categories of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The categorical columns.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        for attr in ("categories_", "n_other_", "n_samples_seen_"):
            self.__dict__.pop(attr, None)
        return self._learn(X)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Learn the categories of one more chunk; new ones take the next free columns.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The chunk's categorical columns, as in earlier calls.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The updated encoder.
        """
        return self._learn(X)

    def _learn(self, X):
        first = not hasattr(self, "categories_")
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=first)
        if first:
            index = [{} for _ in range(X.shape[1])]
            n_other = np.zeros(X.shape[1], dtype=np.int64)
        else:
            index = self._slots()
            n_other = self.n_other_.copy()
        room = self.max_categories - 1
        for j in range(X.shape[1]):
            col = index[j]
            for value in X[:, j]:
                key = _key(value)
                if key in col:
                    continue
                if len(col) < room:
                    col[key] = len(col)
                else:
                    n_other[j] += 1
        # Everything above worked on copies: the state changes all at once.
        self.n_other_ = n_other
        self.categories_ = [np.array(list(d), dtype=object) for d in index]
        self.n_samples_seen_ = getattr(self, "n_samples_seen_", 0) + X.shape[0]
        return self

    def _slots(self) -> list[dict]:
        """For each column, category -> output column. Built from ``categories_``,
        the only stored state, so that skops can save the encoder."""
        return [{c: i for i, c in enumerate(cats)} for cats in self.categories_]

    def transform(self, X):
        """Encode ``X``: one block of ``max_categories`` columns per input column.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The categorical columns.

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_features * max_categories)
            The one-hot encoding, float64.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=False)
        k = self.max_categories
        out = np.zeros((X.shape[0], X.shape[1] * k))
        rows = np.arange(X.shape[0])
        for j, col in enumerate(self._slots()):
            full = len(col) == k - 1
            slots = np.array(
                [col.get(_key(v), k - 1 if full else -1) for v in X[:, j]], dtype=np.int64
            )
            known = slots >= 0
            out[rows[known], j * k + slots[known]] = 1.0
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``<column>_<category>``, then ``<column>_other``.

        Free columns not taken yet are ``<column>_free<i>``.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input column names; ``feature_names_in_`` or ``x0, x1, ...`` by default.

        Returns
        -------
        names : ndarray of str objects
            One name per output column.
        """
        check_is_fitted(self)
        if input_features is None:
            input_features = getattr(
                self, "feature_names_in_", [f"x{j}" for j in range(self.n_features_in_)]
            )
        names = []
        for feature, cats in zip(input_features, self.categories_, strict=True):
            names += [f"{feature}_{c}" for c in cats]
            names += [f"{feature}_free{i}" for i in range(len(cats), self.max_categories - 1)]
            names.append(f"{feature}_other")
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags
