"""StreamColumnTransformer: a ``ColumnTransformer`` whose parts keep learning.

scikit-learn's :class:`~sklearn.compose.ColumnTransformer` has no ``partial_fit``, so
inside a :class:`~skocl.StreamPipeline` it stays as first fitted: its scaler never
updates and its encoder never learns a category first seen later.
:class:`StreamColumnTransformer` adds ``partial_fit``, which passes each part its
columns of the chunk, and is otherwise the same class.
"""

from __future__ import annotations

import copy
import warnings

from sklearn.compose import ColumnTransformer
from sklearn.utils import _safe_indexing, get_tags
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted

from .exceptions import FrozenStepWarning

__all__ = ["StreamColumnTransformer"]

_ONLINE_ALTERNATIVES = {
    "OneHotEncoder": "skocl.preprocessing.OnlineOneHotEncoder",
    "OrdinalEncoder": "skocl.preprocessing.OnlineOneHotEncoder",
    "TargetEncoder": "skocl.preprocessing.OnlineOneHotEncoder",
    "PCA": "IncrementalPCA",
    "RobustScaler": "StandardScaler or MaxAbsScaler",
    "ColumnTransformer": "skocl.compose.StreamColumnTransformer",
}


def _skipped(part) -> bool:
    return isinstance(part, str) and part in ("drop", "passthrough")


def _learns_in_fit(part) -> bool:
    try:
        return get_tags(part).requires_fit
    except AttributeError:  # not a scikit-learn estimator: assume it learns in fit
        return True


def _frozen_message(kind: str, name: str, part) -> str:
    cls = type(part).__name__
    alternative = _ONLINE_ALTERNATIVES.get(cls)
    hint = f"; for streams use {alternative}" if alternative else ""
    return (
        f"{kind} {name!r} ({cls}) has no partial_fit: it transforms every chunk as it "
        f"was fitted and learns nothing from the stream{hint}. Filter "
        "skocl.exceptions.FrozenStepWarning if that is what you want."
    )


class StreamColumnTransformer(ColumnTransformer):
    """A :class:`~sklearn.compose.ColumnTransformer` with ``partial_fit``.

    ``fit``, ``transform``, ``fit_transform``, ``get_feature_names_out``,
    ``set_output``, ``set_params`` and the rest are those of ``ColumnTransformer``.
    :meth:`partial_fit` learns from one chunk:

    - the first call (on an unfitted transformer) is ``fit`` on the chunk: this
      fixes the columns and the output layout;
    - later calls give each part with ``partial_fit`` (``StandardScaler``,
      :class:`~skocl.preprocessing.OnlineOneHotEncoder`, ...) its columns of the
      chunk; stateless parts (``FunctionTransformer``), ``"passthrough"`` and
      ``"drop"`` have nothing to learn;
    - a part without ``partial_fit`` that learns in ``fit`` (``OneHotEncoder``,
      ``PCA``) keeps what it learned from the first chunk, and each call warns with
      a :class:`~skocl.exceptions.FrozenStepWarning` naming it.

    Parameters are those of :class:`~sklearn.compose.ColumnTransformer`.

    Parameters
    ----------
    transformers : list of tuples
        ``(name, transformer, columns)`` tuples, as for ``ColumnTransformer``.
    remainder : {"drop", "passthrough"} or estimator, default="drop"
        What to do with the columns no transformer names.
    sparse_threshold : float, default=0.3
        As for ``ColumnTransformer``.
    n_jobs : int, default=None
        As for ``ColumnTransformer`` (``fit`` and ``transform`` only).
    transformer_weights : dict, default=None
        As for ``ColumnTransformer``.
    verbose : bool, default=False
        As for ``ColumnTransformer``.
    verbose_feature_names_out : bool, str or Callable, default=True
        As for ``ColumnTransformer``.

    Attributes
    ----------
    transformers_ : list
        The fitted transformers, as for ``ColumnTransformer``.
    named_transformers_ : :class:`~sklearn.utils.Bunch`
        The fitted transformers by name.
    output_indices_ : dict
        Output columns of each transformer.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the input columns, when the input had them.

    See Also
    --------
    sklearn.compose.ColumnTransformer : The parent class, without ``partial_fit``.
    skocl.preprocessing.OnlineOneHotEncoder : One-hot encoding that learns new
        categories from every chunk.
    skocl.StreamPipeline : The pipeline that calls ``partial_fit`` on its steps.

    Notes
    -----
    A ``partial_fit`` that raises leaves every part as it was (their state is copied
    before the first part learns, as :class:`~skocl.StreamPipeline` does). Columns are
    checked against those of the first call (number, and names for a DataFrame)
    before any part learns.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skocl.compose import StreamColumnTransformer
    >>> from skocl.preprocessing import OnlineOneHotEncoder
    >>> ct = StreamColumnTransformer([
    ...     ("num", StandardScaler(), ["temp"]),
    ...     ("cat", OnlineOneHotEncoder(max_categories=4), ["city"]),
    ... ])
    >>> ct = ct.partial_fit(pd.DataFrame({"temp": [10.0, 20.0], "city": ["Oslo", "Rome"]}))
    >>> ct = ct.partial_fit(pd.DataFrame({"temp": [30.0], "city": ["Lima"]}))
    >>> list(ct.named_transformers_["cat"].categories_[0])
    ['Oslo', 'Rome', 'Lima']
    >>> float(ct.named_transformers_["num"].mean_[0])
    20.0
    """

    def partial_fit(self, X, y=None):
        """Learn from one chunk: ``fit`` the first time, then each part's ``partial_fit``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            The chunk, with the columns of the first call.
        y : array-like of shape (n_samples,), default=None
            Targets, passed to each part's ``partial_fit``.

        Returns
        -------
        self : object
            The updated transformer.
        """
        if not hasattr(self, "transformers_"):
            return self.fit(X, y)
        check_is_fitted(self)
        _check_feature_names(self, X, reset=False)
        _check_n_features(self, X, reset=False)
        plan = []
        for name, part, _ in self.transformers_:
            columns = self._transformer_to_input_indices.get(name, [])
            if _skipped(part) or len(columns) == 0:
                continue
            if hasattr(part, "partial_fit"):
                plan.append((name, part, columns))
            elif _learns_in_fit(part):
                warnings.warn(
                    _frozen_message("StreamColumnTransformer part", name, part),
                    FrozenStepWarning,
                    stacklevel=2,
                )
        snapshots = []
        try:
            for _, part, columns in plan:
                snapshots.append((part, copy.deepcopy(part.__dict__)))
                part.partial_fit(_safe_indexing(X, columns, axis=1), y)
        except BaseException:
            for part, state in reversed(snapshots):
                part.__dict__.clear()
                part.__dict__.update(state)
            raise
        return self
