"""Input checks of the estimator: casting with located errors, sample weights, labels."""

from __future__ import annotations

import math
from numbers import Number

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets, unique_labels
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
        # A label past the last class is compared with the last class (not equal).
        found = classes.take(idx, mode="clip") == y if len(classes) else idx < 0
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
    """Hold out ``fraction`` of the rows (stratified when every class has two; rows of
    several tasks are not stratified) for early stopping: ``X_train, X_val, y_train,
    y_val, sw_train``."""
    idx = np.arange(X.shape[0])
    stratify = None
    if y_idx.ndim == 1:
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


# ---------------------------------------------------------------------- several tasks
def is_multi_output(y) -> bool:
    """Whether ``y`` holds several tasks: 2-D with at least two columns (one column is
    one task, as scikit-learn reads it)."""
    shape = getattr(y, "shape", None)
    if shape is None:
        shape = np.shape(np.asarray(y, dtype=object))
    return len(shape) == 2 and shape[1] >= 2


def task_columns(y, n_rows: int) -> list[np.ndarray]:
    """The columns of a multi-output ``y`` (array-like of shape (n_samples, n_tasks)),
    each as a 1-D array; an error names a wrong shape."""
    Y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if Y.ndim != 2:
        raise ValueError(f"y must be 2-D (n_samples, n_tasks) here; got shape {Y.shape}.")
    if Y.shape[0] != n_rows:
        raise ValueError(f"X has {n_rows} rows but y has {Y.shape[0]}.")
    return [Y[:, t] for t in range(Y.shape[1])]


def missing_labels(column: np.ndarray) -> np.ndarray:
    """Where a task's column has no label: NaN in a float column, None or NaN in an
    object column."""
    if column.dtype.kind == "f":
        return np.isnan(column)
    if column.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in column])
    return np.zeros(len(column), dtype=bool)


def present(column: np.ndarray, task: int) -> np.ndarray:
    """The labels of a task's column that are there, checked as labels of one task."""
    values = column[~missing_labels(column)]
    if column.dtype.kind == "f" and len(values) and np.all(values == np.round(values)):
        values = values.astype(np.int64)  # integer labels in a float column (NaN = none)
    try:
        check_label_types(values.tolist() if values.dtype.kind == "O" else values)
        if values.dtype.kind == "O" and not any(isinstance(v, str) for v in values):
            values = np.asarray(values.tolist())  # numbers in an object column
        if len(values):
            check_classification_targets(values)
    except ValueError as exc:
        raise ValueError(f"y column {task}: {exc}") from None
    return values


def start_task_classes(param, classes, columns: list[np.ndarray], first_partial_fit: bool):
    """Per task, its label set (the ``classes`` argument of partial_fit or the
    ``classes`` parameter: a list of array-likes, one per task; else the labels of its
    column) and whether the label sets are fixed. ``fit`` (and a fixed label set) needs
    two classes per task; a first ``partial_fit`` may start a task with one."""
    given = classes if classes is not None else param
    if given is not None and len(given) != len(columns):
        raise ValueError(
            f"classes gives {len(given)} label sets for y with {len(columns)} columns: "
            "give one array of labels per column of y."
        )
    out = []
    for t, column in enumerate(columns):
        labels = present(column, t)
        if given is not None:
            out.append(unique_labels(given[t]))
        elif len(labels):
            out.append(unique_labels(labels))
        else:
            raise ValueError(
                f"y column {t} has no label on any row: its label set is unknown. Give "
                "it with `classes` (one array of labels per column of y)."
            )
        if len(out[-1]) < 2 and (given is not None or not first_partial_fit):
            raise ValueError(
                f"{'partial_fit' if first_partial_fit else 'fit'} needs at least 2 classes "
                f"per task; y column {t} has 1 class: {out[-1][0]!r}."
            )
    return out, given is not None


def encode_tasks(classes: list, columns: list[np.ndarray], fixed: list[bool]):
    """Encode each task's column in its label set, ``-1`` where a label is missing.
    A task whose label set is not ``fixed`` grows with labels outside it; a column past
    the known tasks is a new task, its label set that of its labels.
    Returns ``(local indices (n, n_tasks), grown)``, ``grown`` a list of
    ``(task, grown classes)``; an error names the column."""
    n = len(columns[0]) if columns else 0
    idx = np.full((n, len(columns)), -1, dtype=np.int64)
    grown = []
    for t, column in enumerate(columns):
        missing = missing_labels(column)
        values = present(column, t)
        if t >= len(classes):  # a new task
            if not len(values):
                raise ValueError(
                    f"y column {t} is a new task but has no label on any row of this "
                    "chunk: its label set is unknown."
                )
            new = unique_labels(values)
            idx[~missing, t] = encode(new, values)
            grown.append((t, new))
            continue
        known = classes[t]
        try:
            idx[~missing, t] = encode(known, values) if len(values) else []
        except ValueError as exc:
            if fixed[t]:
                raise ValueError(
                    f"y column {t}: {exc} The label sets were fixed by `classes`; labels "
                    "outside them are rejected."
                ) from None
            try:
                new = unique_labels(known, values)
            except ValueError as mix:
                raise ValueError(f"y column {t}: {exc} {mix}") from None
            idx[~missing, t] = encode(new, values)
            grown.append((t, new))
    return idx, grown


def rows_right(pred: np.ndarray, columns: list[np.ndarray]):
    """Of several tasks: which rows ``pred`` (one column per task) gets right, every
    label of the row predicted, and which rows carry a label at all (a row with none
    is not scored). ``columns`` as :func:`task_columns` gives them."""
    right = np.ones(pred.shape[0], dtype=bool)
    labelled = np.zeros(pred.shape[0], dtype=bool)
    for t, column in enumerate(columns):
        has = ~missing_labels(column)
        right[has] &= pred[has, t] == present(column, t)
        labelled |= has
    return right, labelled
