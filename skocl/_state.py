"""The fitted state of an OnlineFineTuneClassifier as JSON-able values and tensors,
for :func:`skocl.save` and :func:`skocl.load`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from ._labels import labels_from_json, labels_to_json
from ._modules import make_module, resolve_device
from ._steps import to_cpu

# Fitted attributes that are plain JSON values (saved as they are).
PLAIN_ATTRS = (
    "n_features_in_",
    "n_iter_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
    "n_samples_seen_",
    "n_skipped_steps_",
)


def export_state(clf) -> tuple[dict, dict]:
    """``(attrs, tensors)``: the plain fitted attributes, labels and feature names as
    JSON-able values; the module's weights and the learner's state as CPU tensors."""
    check_is_fitted(clf)
    attrs = {k: getattr(clf, k) for k in PLAIN_ATTRS}
    if isinstance(clf.classes_, list):  # several tasks
        attrs["task_classes"] = [labels_to_json(c) for c in clf.classes_]
    else:
        attrs["classes_"] = labels_to_json(clf.classes_)
    attrs["fixed_classes"] = clf._fixed_classes
    attrs["sparse_input"] = clf.learner_.sparse
    if "feature_names_in_" in vars(clf):
        attrs["feature_names_in_"] = clf.feature_names_in_.tolist()
    tensors = {"module": to_cpu(clf.module_.state_dict()), "learner": clf.learner_.state_dict()}
    return attrs, tensors


def import_state(clf, attrs: dict, tensors: dict):
    """Rebuild on ``clf`` (whose parameters, ``module`` included, are those it was
    saved with) the fitted state that :func:`export_state` wrote."""
    if "task_classes" in attrs:  # several tasks
        classes = [labels_from_json(c) for c in attrs["task_classes"]]
        n_classes = [len(c) for c in classes]
    else:
        classes = labels_from_json(attrs["classes_"])
        n_classes = len(classes)
    sparse = bool(attrs.get("sparse_input", False))  # format 2 files: dense
    shape = (2, attrs["n_features_in_"])
    X = sp.csr_matrix(shape, dtype=clf.dtype) if sparse else np.zeros(shape, clf.dtype)
    device = resolve_device(clf.device)
    module, trunk, head = make_module(clf.get_params(deep=False), n_classes, X, 0, device)
    try:
        module.load_state_dict(tensors["module"])
    except RuntimeError as exc:
        raise ValueError(
            f"The saved weights do not fit the module {type(module).__name__}: {exc}"
        ) from exc
    clf.n_features_in_ = attrs["n_features_in_"]
    if "feature_names_in_" in attrs:
        clf.feature_names_in_ = np.asarray(attrs["feature_names_in_"], dtype=object)
    clf._start(classes, attrs["fixed_classes"], module, trunk, head, 0, device, sparse)
    clf.learner_.load_state_dict(tensors["learner"])
    for k in PLAIN_ATTRS:
        setattr(clf, k, attrs[k])
    return clf
