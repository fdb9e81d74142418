"""Input checks of the estimator: casting with located errors, sample weights, labels."""

from __future__ import annotations

import math
from numbers import Number

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _check_sample_weight

from ._modules import is_skorch_net, output_layer

FLOATS = (np.float64, np.float32)


def cast(X, dtype: str):
    """X in the network's dtype; an error names the first value that is NaN or
    infinite there (including finite float64 values beyond the float32 range)."""
    np_dtype = np.float32 if dtype == "float32" else np.float64
    if sp.issparse(X):
        with np.errstate(over="ignore"):
            X = X.astype(np_dtype, copy=False)
        values = X.data
    else:
        with np.errstate(over="ignore"):  # reported below, with its row and column
            X = values = np.asarray(X, dtype=np_dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        total = values.sum()
    if not math.isfinite(total) and not np.isfinite(values).all():
        if sp.issparse(X):
            coo = X.tocoo()
            bad = ~np.isfinite(coo.data)
            row, col, value = coo.row[bad][0], coo.col[bad][0], coo.data[bad][0]
        else:
            row, col = np.argwhere(~np.isfinite(X))[0]
            value = X[row, col]
        raise ValueError(
            f"Input X contains NaN or infinity in {dtype} (the network's dtype): "
            f"{value} at row {row}, column {col}."
        )
    return X


def check_weights(sample_weight, X, dtype: str):
    """Validated sample weights (None stays None): numeric, non-negative, finite in the
    network's ``dtype`` and not all zero there; errors name ``sample_weight``."""
    if sample_weight is None:
        return None
    try:
        sw = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
    except (TypeError, ValueError) as exc:
        if "sample_weight" in str(exc) or "Sample weights" in str(exc):
            raise
        raise ValueError(f"sample_weight must hold numbers: {exc}") from None
    if not np.isfinite(sw).all():
        row = int(np.flatnonzero(~np.isfinite(sw))[0])
        raise ValueError(f"sample_weight contains NaN or infinity: {sw[row]} at row {row}.")
    with np.errstate(over="ignore", under="ignore"):
        in_dtype = sw.astype(dtype)
        total = in_dtype.sum(dtype=dtype)
    if not np.isfinite(in_dtype).all():
        row = int(np.flatnonzero(~np.isfinite(in_dtype))[0])
        raise ValueError(
            f"sample_weight has {sw[row]} at row {row}, beyond the range of {dtype} (the "
            "network's dtype); only the ratios of the weights matter: scale them down."
        )
    if not np.isfinite(total):
        raise ValueError(
            f"sample_weight sums to infinity in {dtype} (the network's dtype); only the "
            "ratios of the weights matter: scale them down."
        )
    if not sw.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    if total == 0:
        raise ValueError(
            f"sample_weight rounds to zero in {dtype} (the network's dtype; largest weight "
            f"{sw.max()}): the chunk would teach nothing. Only the ratios of the weights "
            "matter: scale them up."
        )
    return sw


def check_label_types(y) -> None:
    """An error when the labels ``y`` (a list, or an object array or Series) mix types
    that cannot be sorted into one label set: strings with numbers, say."""
    if isinstance(y, (list, tuple)):
        values = y
    elif getattr(getattr(y, "dtype", None), "kind", None) == "O":
        values = np.asarray(y).ravel().tolist()
    else:
        return
    kinds = {}
    for v in values:
        kind = "str" if isinstance(v, str) else "number" if isinstance(v, Number) else None
        kinds.setdefault(kind or type(v).__name__, v)
        if len(kinds) > 1:
            shown = ", ".join(f"{k} ({v!r})" for k, v in kinds.items())
            raise ValueError(
                f"y holds labels of more than one type: {shown}. Use one type for every "
                "label (for example all strings)."
            )


def encode(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of ``y``'s labels in the sorted ``classes``; an error names labels that
    are not there."""
    try:
        idx = np.searchsorted(classes, y)
        found = idx < len(classes)
        found[found] = classes[idx[found]] == y[found]
    except TypeError:  # labels that do not compare with the classes' type
        found = np.zeros(len(y), dtype=bool)
        idx = None
    if not found.all():
        unknown = sorted({repr(v) for v in np.asarray(y)[~found].tolist()})
        raise ValueError(
            f"y contains label(s) {', '.join(unknown[:10])} not in classes_ {classes.tolist()}."
        )
    return idx


def start_classes(param, module, classes, y, first_partial_fit: bool):
    """The label set of a (re)start and whether it is fixed: the ``classes`` argument of
    partial_fit, the ``classes`` parameter (``param``) or a skorch module's classes, or
    (in fit, or when nothing fixes it) y's labels."""
    given = param
    if is_skorch_net(module):
        if not getattr(module, "initialized_", False):
            raise ValueError(
                "module is a skorch net that is not initialized or fitted. sklearn's "
                "clone() (used by GridSearchCV and cross_val_score) drops a skorch "
                "net's weights: there, pass module=net.module_, classes=net.classes_."
            )
        if given is None:
            given = getattr(module, "classes_", None)
    given = None if given is None else unique_labels(given)
    if classes is None:
        classes = given
    elif given is not None and not np.array_equal(unique_labels(classes), given):
        raise ValueError(
            f"classes={classes!r} differs from the label set {given!r} given by the "
            "classes parameter or the skorch module."
        )
    fixed = classes is not None
    if classes is None:
        classes = y  # a label set that grows as new labels arrive
    classes = unique_labels(classes)
    if len(classes) < 2 and (fixed or not first_partial_fit):
        raise ValueError(
            f"{'partial_fit' if first_partial_fit else 'fit'} needs at least 2 classes; "
            f"got 1 class: {classes[0]!r}."
        )
    return classes, fixed


def split_validation(X, y_idx, sw, fraction: float, seed: int):
    """Hold out ``fraction`` of the rows (stratified when every class has two) for early
    stopping: ``X_train, X_val, y_train, y_val, sw_train``."""
    idx = np.arange(X.shape[0])
    counts = np.bincount(y_idx)
    stratify = y_idx if counts[counts > 0].min() >= 2 else None
    train, val = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    if len(train) == 0 or len(val) == 0:
        raise ValueError(
            f"early_stopping needs at least 2 samples to split off a validation set; "
            f"got {X.shape[0]}."
        )
    sw_train = None if sw is None else sw[train]
    return X[train], X[val], y_idx[train], y_idx[val], sw_train


def encode_or_grow(classes: np.ndarray, y: np.ndarray, fixed: bool, head):
    """Encode y in ``classes``; with a label set that is not ``fixed``, labels outside
    it grow it: returns ``(y_idx, grown classes or None)``. An error says why a label
    cannot be taken (a fixed label set, a head that cannot grow, mixed label types)."""
    try:
        return encode(classes, y), None
    except ValueError as exc:
        if fixed:
            raise ValueError(
                f"{exc} The label set was fixed by `classes`; labels outside it are rejected."
            ) from None
        try:
            grown = unique_labels(classes, y)
        except ValueError as mix:
            raise ValueError(f"{exc} {mix}") from None
        if output_layer(head, len(classes)) is None:
            raise ValueError(
                f"{exc} New classes need a head whose output layer is an nn.Linear with one "
                f"output per class; {type(head).__name__} is not. Pass every label up front "
                "with `classes`."
            ) from None
        return encode(grown, y), grown
