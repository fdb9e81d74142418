"""Saving and loading fitted skocl models without pickle.

A model file is a zip archive:

- ``meta.json``: format version, skocl version, the estimator's parameters and its plain
  fitted attributes, and any ``extra`` data (a stream position, for checkpoints);
- ``state.pt``: tensors only (module weights, optimizer states, random state), read back
  with ``torch.load(weights_only=True)``, which cannot run code;
- ``steps.skops``: for a StreamPipeline, its steps before the classifier, read back with
  ``skops.io.loads`` and a list of trusted types.

Loading never unpickles arbitrary objects. A user-defined ``nn.Module`` is not stored as
code: pass ``module=`` to :func:`load` (or list its class in ``trusted``).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__

FORMAT = "skocl-model"
# Bumped whenever what a model file holds changes; load reads this version only.
# 2: skocl 0.1.0 (the learner's state is saved by its components).
FORMAT_VERSION = 2

# Transformers a StreamPipeline file may hold without the user trusting them by name.
DEFAULT_TRUSTED = [
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.decomposition._incremental_pca.IncrementalPCA",
    "sklearn.feature_extraction.text.HashingVectorizer",
    "sklearn.kernel_approximation.RBFSampler",
]


def save(estimator, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Save a fitted :class:`~skocl.OnlineFineTuneClassifier` or
    :class:`~skocl.StreamPipeline` to ``path``, atomically.

    Parameters
    ----------
    estimator : OnlineFineTuneClassifier or StreamPipeline
        A fitted model.
    path : str or path-like
        Destination file (by convention ``*.skocl``); replaced if it exists.
    extra : dict, default=None
        JSON-able data stored alongside (checkpoints keep the stream position here).

    Returns
    -------
    path : pathlib.Path
        The file written.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> import skocl
    >>> X = np.random.RandomState(0).rand(40, 3)
    >>> y = np.array(["a", "b"] * 20)
    >>> clf = skocl.OnlineFineTuneClassifier(max_iter=5, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skocl")
    >>> _ = skocl.save(clf, path)
    >>> again = skocl.load(path)
    >>> bool((again.predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    from ._classifier import OnlineFineTuneClassifier
    from .pipeline import StreamPipeline

    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skocl_version": __version__,
        "extra": extra or {},
    }
    files: dict[str, bytes] = {}
    if isinstance(estimator, OnlineFineTuneClassifier):
        meta["kind"] = "OnlineFineTuneClassifier"
        meta["classifier"], files["state.pt"] = _dump_classifier(estimator)
    elif isinstance(estimator, StreamPipeline):
        import skops.io as sio

        final = estimator._final_estimator
        if not isinstance(final, OnlineFineTuneClassifier):
            raise TypeError(
                "skocl.save saves StreamPipelines that end in an OnlineFineTuneClassifier; "
                f"this one ends in {type(final).__name__}."
            )
        meta["kind"] = "StreamPipeline"
        meta["steps"] = [name for name, _ in estimator.steps]
        meta["pipeline_params"] = {"verbose": bool(estimator.verbose)}
        meta["classifier"], files["state.pt"] = _dump_classifier(final)
        files["steps.skops"] = sio.dumps(list(estimator.steps[:-1]))
    else:
        raise TypeError(
            "skocl.save takes an OnlineFineTuneClassifier or a StreamPipeline, "
            f"got {type(estimator).__name__}."
        )
    files["meta.json"] = json.dumps(meta, indent=1).encode()

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    os.replace(tmp, path)  # a reader never sees a half-written file
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata of a model file (parameters, fitted attributes, ``extra``), checked
    for format and version."""
    with _open(path) as zf:
        return _read_meta(zf, path)


def load(
    path: str | os.PathLike,
    *,
    module: nn.Module | None = None,
    trusted: list[str] | None = None,
    device: str | None = None,
):
    """Load a model saved by :func:`save`; no pickle, no code from the file is run.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    module : torch.nn.Module, default=None
        The network architecture, required when the model was built from a user's
        ``nn.Module`` instance or a skorch net (its weights are then loaded into a copy).
    trusted : list of str, default=None
        Fully qualified names of further types the file may hold: a user's ``nn.Module``
        class saved by name (``"package.module.ClassName"``), or pipeline steps beyond
        skocl's default list (sklearn scalers, IncrementalPCA, HashingVectorizer).
    device : str, default=None
        Where to put the network. None keeps the saved ``device`` when it is available
        here and uses the CPU otherwise, so a model trained on a GPU loads anywhere.

    Returns
    -------
    estimator : OnlineFineTuneClassifier or StreamPipeline
        The fitted model, ready to predict or to continue with ``partial_fit``.
    """
    trusted = list(trusted or [])
    with _open(path) as zf:
        meta = _read_meta(zf, path)
        state = torch.load(io.BytesIO(zf.read("state.pt")), weights_only=True, map_location="cpu")
        clf = _load_classifier(meta["classifier"], state, module, trusted, device)
        if meta["kind"] == "OnlineFineTuneClassifier":
            return clf
        import skops.io as sio

        from .pipeline import StreamPipeline

        data = zf.read("steps.skops")
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in DEFAULT_TRUSTED]
        unknown = [t for t in untrusted if t not in trusted]
        if unknown:
            raise ValueError(
                f"{path} holds pipeline steps of types {unknown} that are not trusted; pass "
                "them in trusted=[...] if you trust this file."
            )
        steps = sio.loads(data, trusted=untrusted + DEFAULT_TRUSTED)
        return StreamPipeline([*steps, (meta["steps"][-1], clf)], **meta["pipeline_params"])


# --------------------------------------------------------------------------- internals
def _open(path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, IsADirectoryError) as exc:
        raise ValueError(f"{path} is not a skocl model file (not a zip archive).") from exc


def _read_meta(zf: zipfile.ZipFile, path) -> dict:
    try:
        meta = json.loads(zf.read("meta.json"))
    except KeyError as exc:
        raise ValueError(f"{path} is not a skocl model file (no meta.json).") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a skocl model file (format {meta.get('format')!r}).")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        writer = meta.get("skocl_version", "unknown")
        advice = (
            "Upgrade skocl to load it."
            if isinstance(version, int) and version > FORMAT_VERSION
            else f"Load it with skocl {writer}, which wrote it."
        )
        raise ValueError(
            f"{path} holds model format version {version} (written by skocl {writer}); "
            f"this skocl {__version__} reads model format version {FORMAT_VERSION} only. " + advice
        )
    return meta


def _dump_classifier(clf) -> tuple[dict, bytes]:
    attrs, tensors = clf._export_state()
    params, module_spec = _params_to_json(clf)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return {"params": params, "module": module_spec, "attrs": attrs}, buffer.getvalue()


def _params_to_json(clf) -> tuple[dict, dict]:
    from ._classifier import _is_skorch_net
    from ._labels import labels_to_json

    params = clf.get_params(deep=False)
    module = params.pop("module")
    if module is None:
        spec = {"kind": "default"}
    elif isinstance(module, type):
        spec = {"kind": "class", "class": f"{module.__module__}.{module.__qualname__}"}
    else:
        source = module.module_ if _is_skorch_net(module) else module
        spec = {
            "kind": "instance",
            "class": f"{type(source).__module__}.{type(source).__qualname__}",
        }
    out = {}
    for key, value in params.items():
        if key == "classes" and value is not None:
            value = {"labels": labels_to_json(value)}
        elif key == "random_state" and not (value is None or isinstance(value, int)):
            value = None  # a RandomState object's stream lives on in the saved rng state
        elif key == "device":
            value = str(value)
        elif key == "drift_detector" and not (value is None or isinstance(value, str)):
            value = _detector_to_json(value)
        elif isinstance(value, tuple):
            value = {"tuple": list(value)}
        try:
            json.dumps(value)
        except TypeError as exc:
            raise TypeError(f"Cannot save parameter {key}={value!r}: not JSON-able.") from exc
        out[key] = value
    return out, spec


def _detector_to_json(detector) -> dict:
    """A river drift detector as its class and constructor parameters."""
    cls = type(detector)
    get_params = getattr(detector, "_get_params", None)
    if get_params is None:
        raise TypeError(
            f"Cannot save drift_detector={detector!r}: only detectors with river's "
            "_get_params() are saved (as their class and parameters)."
        )
    return {"detector": f"{cls.__module__}.{cls.__qualname__}", "params": get_params()}


def _params_from_json(params: dict, trusted: list[str] | None = None) -> dict:
    from ._labels import labels_from_json

    out = {}
    for key, value in params.items():
        if isinstance(value, dict) and "detector" in value:
            cls = _import_trusted(value["detector"], trusted or [], prefixes=("river.drift.",))
            value = cls(**value["params"])
        elif isinstance(value, dict) and "tuple" in value:
            value = tuple(value["tuple"])
        elif isinstance(value, dict) and "labels" in value:
            value = labels_from_json(value["labels"])
        out[key] = value
    return out


def _load_classifier(data: dict, state: dict, module, trusted: list[str], device):
    from ._classifier import OnlineFineTuneClassifier

    params = _params_from_json(data["params"], trusted)
    spec = data["module"]
    if module is not None:
        params["module"] = module
    elif spec["kind"] == "class":
        params["module"] = _import_trusted(spec["class"], trusted)
    elif spec["kind"] == "instance":
        raise ValueError(
            f"This model was built from a {spec['class']} instance: pass an instance of it "
            "(any weights; they are replaced) as load(..., module=...)."
        )
    if device is None:
        wanted = torch.device(params["device"] if params["device"] != "auto" else "cpu")
        here = wanted.type != "cuda" or (
            torch.cuda.is_available() and (wanted.index or 0) < torch.cuda.device_count()
        )
        device = params["device"] if here else "cpu"
    params["device"] = device
    clf = OnlineFineTuneClassifier(**params)
    return clf._import_state(data["attrs"], state)


def _import_trusted(qualified: str, trusted: list[str], prefixes=("skocl.",)) -> type:
    if qualified not in trusted and not qualified.startswith(prefixes):
        raise ValueError(
            f"The model's class {qualified} is not trusted: pass "
            f"trusted=[{qualified!r}] to import it (or, for a module, module=an instance)."
        )
    module_name, _, name = qualified.rpartition(".")
    obj = importlib.import_module(module_name)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj
