"""Checks of a model file before any network is built: errors that name the file, and
the sizes a file declares (features, hidden widths, label sets) against the weights it
stores."""

from __future__ import annotations

import torch

from ._modules import hidden_sizes
from .exceptions import ModelFileError

# Without the number of stored weights to bound it, a user module's input width is at
# most this (a probe row of this width is built on load).
_MAX_FREE_FEATURES = 2**20


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line[:200]}" if line else type(exc).__name__


def error(path, problem: str, exc: BaseException | None = None) -> ModelFileError:
    return ModelFileError(f"{path}: {problem}" + (f" ({one_line(exc)})" if exc else "") + ".")


def labels(data, what: str, path):
    from ._labels import labels_from_json

    try:
        labels = labels_from_json(data)
        if labels.ndim != 1:
            raise ValueError(f"{labels.ndim}-dimensional")
        unique = len(set(labels.tolist()))
    except Exception as exc:
        raise error(path, f"meta.json's {what} is not a list of labels", exc) from exc
    if unique != len(labels):
        raise ModelFileError(f"{path}: meta.json's {what} repeats a label.")
    return labels


def check_sizes(data: dict, params: dict, tensors: dict, module, path) -> None:
    """Declared sizes against the stored weights, before any network is built."""
    attrs = data["attrs"]
    n = attrs.get("n_features_in_")
    if type(n) is not int or n < 1:
        raise ModelFileError(f"{path}: n_features_in_={n!r} is not a positive integer.")
    if "task_classes" in attrs:
        tasks = attrs["task_classes"]
        if not isinstance(tasks, list) or len(tasks) < 2:
            raise ModelFileError(f"{path}: task_classes is not a list of 2 or more label sets.")
        heads = [len(labels(c, f"task_classes[{t}]", path)) for t, c in enumerate(tasks)]
    else:
        heads = [len(labels(attrs.get("classes_"), "classes_", path))]
    n_classes = sum(heads)
    names = attrs.get("feature_names_in_")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != n
        or not all(isinstance(v, str) for v in names)
    ):
        raise ModelFileError(f"{path}: feature_names_in_ is not a list of {n} column names.")
    weights = tensors["module"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise ModelFileError(f"{path}: state.pt's module is not a state dict of tensors.")
    if module is None and data["module"]["kind"] == "default":
        hidden = params.get("hidden_layer_sizes")
        sparse = attrs.get("sparse_input", False)
        if not isinstance(sparse, bool):
            raise ModelFileError(f"{path}: sparse_input={sparse!r} is not true or false.")
        if hidden == "auto":
            hidden = hidden_sizes(hidden, sparse)
        if isinstance(hidden, int) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if not isinstance(hidden, (tuple, list)) or not all(
            type(h) is int and h > 0 for h in hidden
        ):
            raise ModelFileError(
                f"{path}: hidden_layer_sizes={hidden!r} is not a list of positive integers."
            )
        widths = [n, *hidden]
        expected = [(out, inp) for inp, out in zip(widths, widths[1:])]
        expected += [(size, widths[-1]) for size in heads]
        if sparse and len(hidden):  # a sparse first layer stores one row per feature
            expected[0] = expected[0][::-1]
        stored = [tuple(t.shape) for t in weights.values() if t.ndim == 2]
        if stored == expected:
            return
        if len(stored) != len(expected):
            problem = (
                f"hidden_layer_sizes={tuple(hidden)} declares {len(expected)} weight "
                f"matrices, the file stores {len(stored)}"
            )
        elif stored[0][0 if sparse else 1] != n:
            problem = (
                f"n_features_in_={n}, the first layer's weights take "
                f"{stored[0][0 if sparse else 1]}"
            )
        elif [shape[0] for shape in stored[len(stored) - len(heads) :]] != heads:
            logits = [shape[0] for shape in stored[len(stored) - len(heads) :]]
            problem = (
                f"classes_ has {heads[0]} labels, the head gives {logits[0]} logits"
                if len(heads) == 1
                else f"the tasks' label sets have {heads} labels, the heads give {logits}"
            )
        else:
            problem = f"hidden_layer_sizes={tuple(hidden)}, the weights have shapes {stored}"
        raise ModelFileError(
            f"{path}: the declared sizes do not fit the stored weights: {problem}."
        )
    stored = sum(t.numel() for t in weights.values())
    if n > max(stored, _MAX_FREE_FEATURES):
        raise ModelFileError(
            f"{path}: n_features_in_={n} is more than the network's {stored} stored weights."
        )
    if n_classes > stored:
        raise ModelFileError(
            f"{path}: classes_ has {n_classes} labels, more than the network's {stored} "
            "stored weights."
        )
    source = params.get("module") if module is None else None
    kwargs = params.get("module_kwargs")
    if isinstance(source, type) and isinstance(kwargs, (dict, type(None))):
        # The saved module_kwargs are declared sizes too: build the class on the meta
        # device (no memory) and compare. A class that cannot be built there is left to
        # the real build, as before.
        try:
            with torch.device("meta"):
                probe = source(**(kwargs or {}))
            built = sum(t.numel() for t in probe.state_dict().values())
        except Exception:
            return
        if built > stored:
            raise ModelFileError(
                f"{path}: module_kwargs={kwargs!r} build a {source.__name__} of {built} "
                f"values; the file stores {stored}."
            )
