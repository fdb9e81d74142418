"""Saving and loading fitted skocl models without pickle.

A model file is a zip archive:

- ``meta.json``: format version, skocl version, the estimator's parameters and its plain
  fitted attributes, and any ``extra`` data (a stream position, for checkpoints);
- ``state.pt``: tensors only (module weights, optimizer states, random state), read back
  with ``torch.load(weights_only=True)``, which cannot run code;
- ``steps.skops``: for a StreamPipeline, its steps before the classifier, read back with
  ``skops.io.loads`` and a list of trusted types.

Loading never unpickles arbitrary objects and checks before it uses: the archive (one
member of each name, each inflated within a limit), the metadata's structure, the
declared sizes against the stored weights, and every class named by the file (only
``nn.Module`` classes or river drift detectors, by their own name, from skocl, river or
``trusted``). Every failure is a one-line :class:`~skocl.exceptions.ModelFileError`.
A user-defined ``nn.Module`` is not stored as code: pass ``module=`` to :func:`load` (or
list its class in ``trusted``).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._file_checks import check_sizes as _check_sizes
from ._file_checks import error as _error
from ._file_checks import labels as _labels
from ._file_checks import one_line as _one_line
from ._version import __version__
from .exceptions import ModelFileError

FORMAT = "skocl-model"
# Bumped whenever what a model file holds changes; load reads READS_FORMATS.
# 2: skocl 0.1.0 (the learner's state is saved by its components).
# 3: ``sparse_input`` (a network that reads sparse rows, with a sparse replay memory);
#    a version 2 file is a dense one.
# 4: ``task_classes`` (a model of several tasks, a label set and a head per task).
# 5: the learner's ``rates`` (the head's copies at several rates, ``head_rates``), which
#    a model of one task holds; a model of several tasks holds none and is still
#    written as version 4. A file of version 2 to 4 keeps ``head_lr`` alone. Also
#    (unreleased, so the same version) the learner's ``fresh`` head, learning after a
#    drift, and a step count per copy; a version 5 file without them has no fresh head
#    learning and one count shared by the copies. Also the copies' closed-form
#    candidate (``lda``); a version 5 file without it starts it empty.
FORMAT_VERSION = 5
READS_FORMATS = (2, 3, 4, 5)


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
    >>> clf = skocl.OnlineFineTuneClassifier(random_state=0).partial_fit(X, y, ["a", "b"])
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
    meta["format_version"] = 4 if "task_classes" in meta["classifier"]["attrs"] else 5
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
    for format, version and structure; the tensors are not read.

    Raises
    ------
    skocl.exceptions.ModelFileError
        If the file is not a model file this skocl reads.
    """
    return _parse_meta(_read_members(path, only=("meta.json",))["meta.json"], path)


def load(
    path: str | os.PathLike,
    *,
    module: nn.Module | None = None,
    trusted: list[str] | None = None,
    device: str | None = None,
):
    """Load a model saved by :func:`save`; no pickle, no code from the file is run.

    Everything in the file is checked before it is used: the archive's members and their
    inflated sizes, the metadata's structure, the declared sizes (features, hidden layers,
    classes) against the stored weights, and the names of classes to import, which must be
    ``nn.Module`` classes (or river drift detectors) that skocl or ``trusted`` allows.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    module : torch.nn.Module, default=None
        The network architecture, required when the model was built from a user's
        ``nn.Module`` instance or a skorch net (its weights are then loaded into a copy).
    trusted : list of str, default=None
        Fully qualified names of further types the file may hold: a user's ``nn.Module``
        class or river drift detector saved by name (``"package.module.ClassName"``), or
        pipeline steps beyond those skops trusts by default (which are every public
        scikit-learn estimator, NumPy and ``scipy.special`` ufuncs, and plain Python and
        NumPy values; see :ref:`persistence`).
    device : str, default=None
        Where to put the network. None keeps the saved ``device`` when it is available
        here and uses the CPU otherwise, so a model trained on a GPU loads anywhere.

    Returns
    -------
    estimator : OnlineFineTuneClassifier or StreamPipeline
        The fitted model, ready to predict or to continue with ``partial_fit``.

    Raises
    ------
    skocl.exceptions.ModelFileError
        A ``ValueError`` with a one-line message naming the file and the problem, for a
        damaged or malformed file, another format version, or an untrusted type.
    FileNotFoundError
        If there is no file at ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> import skocl
    >>> X = np.random.RandomState(0).rand(40, 3)
    >>> clf = skocl.OnlineFineTuneClassifier(random_state=0).partial_fit(X, [0, 1] * 20, [0, 1])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skocl")
    >>> _ = skocl.save(clf, path)
    >>> skocl.load(path).n_features_in_
    3
    >>> with open(path, "r+b") as f:
    ...     _ = f.truncate(1000)
    >>> skocl.load(path)
    Traceback (most recent call last):
    ...
    skocl.exceptions.ModelFileError: ...: not a skocl model file (not a readable zip archive) ...
    """
    trusted = list(trusted or [])
    members = _read_members(path)
    meta = _parse_meta(members["meta.json"], path)
    for name in ("state.pt", *(("steps.skops",) if meta["kind"] == "StreamPipeline" else ())):
        if name not in members:
            raise ModelFileError(f"{path} is not a complete skocl model file (no {name}).")
    tensors = _read_tensors(members["state.pt"], path)
    clf = _load_classifier(meta["classifier"], tensors, module, trusted, device, path)
    if meta["kind"] == "OnlineFineTuneClassifier":
        return clf
    from .pipeline import StreamPipeline

    steps = _read_steps(members["steps.skops"], meta["steps"], trusted, path)
    try:
        return StreamPipeline([*steps, (meta["steps"][-1], clf)], **meta["pipeline_params"])
    except (TypeError, ValueError) as exc:
        raise _error(path, "its pipeline cannot be rebuilt", exc) from exc


# --------------------------------------------------------------------------- internals
# What a member may inflate to. meta.json is text (parameters, labels, feature names);
# the other members are written uncompressed by save, so a genuine file never needs more
# than its own size, and the slack only serves files that were recompressed.
META_LIMIT = 64 * 2**20
SLACK = 64 * 2**20
_MEMBERS = ("meta.json", "state.pt", "steps.skops")
_KINDS = ("OnlineFineTuneClassifier", "StreamPipeline")


def _read_members(path, only: tuple[str, ...] = _MEMBERS) -> dict[str, bytes]:
    """The members of a model file, checked and each inflated within its limit."""
    if os.path.isdir(path):
        raise ModelFileError(f"{path} is a directory, not a skocl model file.")
    size = os.path.getsize(path)  # FileNotFoundError for a missing file, as open() gives
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # BadZipFile, OSError, ValueError, ... from a damaged file
        raise _error(path, "not a skocl model file (not a readable zip archive)", exc) from exc
    with zf:
        infos = zf.infolist()
        names: set[str] = set()
        for info in infos:
            name = info.filename
            if name not in _MEMBERS:
                raise ModelFileError(
                    f"{path} is not a skocl model file (unexpected member {name!r}; a model "
                    f"file holds {', '.join(_MEMBERS)})."
                )
            if name in names:
                raise ModelFileError(
                    f"{path} holds two members named {name!r}; a model file has one of each."
                )
            names.add(name)
        if "meta.json" not in names:
            raise ModelFileError(f"{path} is not a skocl model file (no meta.json).")
        out = {}
        for info in infos:
            if info.filename not in only:
                continue
            limit = META_LIMIT if info.filename == "meta.json" else size + SLACK
            if info.file_size > limit:
                raise ModelFileError(
                    f"{path}: {info.filename} would inflate to {info.file_size} bytes, more "
                    f"than the {limit} skocl allows for it in a file of {size} bytes."
                )
            try:
                with zf.open(info) as member:
                    # The declared size bounds what zipfile inflates; read no further.
                    data = member.read(limit + 1)
            except Exception as exc:  # bad CRC, bad header, encryption, unknown method
                raise _error(path, f"{info.filename} is damaged", exc) from exc
            if len(data) > limit:
                raise ModelFileError(f"{path}: {info.filename} inflates beyond {limit} bytes.")
            out[info.filename] = data
    return out


def _check_inner_zip(data: bytes, name: str, path) -> None:
    """state.pt and steps.skops are zip archives too: the same checks, before the reader
    (torch, skops) inflates anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except Exception as exc:
        raise _error(path, f"{name} is not a zip archive as skocl writes it", exc) from exc
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ModelFileError(f"{path}: {name} holds two records of the same name.")
    inflated = sum(info.file_size for info in infos)
    if inflated > len(data) + SLACK:
        raise ModelFileError(
            f"{path}: {name} would inflate to {inflated} bytes from {len(data)} bytes."
        )


def _parse_meta(raw: bytes, path) -> dict:
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _error(path, "meta.json is not valid JSON", exc) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelFileError(f"{path} is not a skocl model file (format {found!r}).")
    version = meta.get("format_version")
    if version not in READS_FORMATS:
        writer = meta.get("skocl_version", "unknown")
        advice = (
            "Upgrade skocl to load it."
            if isinstance(version, int) and version > FORMAT_VERSION
            else f"Load it with skocl {writer}, which wrote it."
        )
        raise ModelFileError(
            f"{path} holds model format version {version} (written by skocl {writer}); "
            f"this skocl {__version__} reads model format versions {READS_FORMATS[0]} to "
            f"{READS_FORMATS[-1]}. " + advice
        )
    if meta.get("kind") not in _KINDS:
        raise ModelFileError(
            f"{path}: unknown kind {meta.get('kind')!r} in meta.json; expected one of "
            f"{', '.join(_KINDS)}."
        )
    _expect(meta, "extra", dict, path)
    data = _expect(meta, "classifier", dict, path)
    for key in ("params", "module", "attrs"):
        _expect(data, key, dict, path, "classifier.")
    spec = data["module"]
    if spec.get("kind") not in ("default", "class", "instance"):
        raise ModelFileError(f"{path}: unknown module kind {spec.get('kind')!r} in meta.json.")
    if spec["kind"] != "default":
        _expect(spec, "class", str, path, "classifier.module.")
    if meta["kind"] == "StreamPipeline":
        steps = _expect(meta, "steps", list, path)
        if not steps or not all(isinstance(name, str) for name in steps):
            raise ModelFileError(f"{path}: meta.json's steps must be a list of step names.")
        params = _expect(meta, "pipeline_params", dict, path)
        if set(params) - {"verbose"}:
            raise ModelFileError(f"{path}: unknown pipeline_params {sorted(params)}.")
    return meta


def _expect(obj: dict, key: str, kind: type, path, where: str = ""):
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ModelFileError(
            f"{path}: meta.json's {where}{key} is {type(value).__name__}, "
            f"expected {kind.__name__}."
        )
    return value


def _read_tensors(raw: bytes, path) -> dict:
    _check_inner_zip(raw, "state.pt", path)
    try:
        tensors = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path}: state.pt holds objects other than tensors and plain values; skocl "
            f"never loads those, as unpickling them could run code ({_one_line(exc)})."
        ) from exc
    except Exception as exc:
        raise _error(path, "state.pt is damaged", exc) from exc
    if not isinstance(tensors, dict) or not isinstance(tensors.get("module"), dict):
        raise ModelFileError(f"{path}: state.pt does not hold the network's weights.")
    # A tensor view may claim more elements than its storage holds (stride 0): refuse any
    # such, so that no later copy can grow the memory beyond the file's own size.
    stack = [tensors]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, torch.Tensor) and (
            obj.layout != torch.strided
            or obj.is_quantized
            or obj.numel() * obj.element_size() > obj.untyped_storage().nbytes()
        ):
            raise ModelFileError(
                f"{path}: state.pt holds a tensor of shape {tuple(obj.shape)} that is "
                "not a plain dense tensor backed by its own data."
            )
    return tensors


# skocl's own pipeline steps, trusted as skops trusts scikit-learn's estimators.
SKOCL_STEP_TYPES = (
    "skocl.compose.StreamColumnTransformer",
    "skocl.preprocessing.OnlineOneHotEncoder",
)


def _read_steps(raw: bytes, names: list[str], trusted: list[str], path) -> list:
    import skops.io as sio

    _check_inner_zip(raw, "steps.skops", path)
    try:
        untrusted = sio.get_untrusted_types(data=raw)
    except Exception as exc:
        raise _error(path, "steps.skops is damaged", exc) from exc
    unknown = [t for t in untrusted if t not in trusted and t not in SKOCL_STEP_TYPES]
    if unknown:
        raise ModelFileError(
            f"{path} holds pipeline steps of types {unknown} that are not trusted; pass "
            "them in trusted=[...] if you trust this file."
        )
    try:
        steps = sio.loads(raw, trusted=untrusted)
    except Exception as exc:
        raise _error(path, "steps.skops is damaged", exc) from exc
    if (
        not isinstance(steps, list)
        or len(steps) != len(names) - 1
        or any(not isinstance(s, (list, tuple)) or len(s) != 2 for s in steps)
        or [s[0] for s in steps] != names[:-1]
    ):
        raise ModelFileError(f"{path}: steps.skops does not hold the steps {names[:-1]}.")
    return [tuple(s) for s in steps]


def _dump_classifier(clf) -> tuple[dict, bytes]:
    attrs, tensors = clf._export_state()
    params, module_spec = _params_to_json(clf)
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return {"params": params, "module": module_spec, "attrs": attrs}, buffer.getvalue()


def _params_to_json(clf) -> tuple[dict, dict]:
    from ._labels import labels_to_json
    from ._modules import is_skorch_net

    params = clf.get_params(deep=False)
    module = params.pop("module")
    if module is None:
        spec = {"kind": "default"}
    elif isinstance(module, type):
        spec = {"kind": "class", "class": f"{module.__module__}.{module.__qualname__}"}
    else:
        source = module.module_ if is_skorch_net(module) else module
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


def _params_from_json(params: dict, trusted: list[str], path) -> tuple[dict, tuple | None]:
    """The parameters, with tuples and labels rebuilt; a drift detector is resolved to its
    class (only a river drift detector class) and returned apart, not yet instantiated."""

    out, detector = {}, None
    for key, value in params.items():
        if isinstance(value, dict) and "detector" in value:
            if not isinstance(value["detector"], str) or not isinstance(value.get("params"), dict):
                raise ModelFileError(f"{path}: meta.json's {key} is not a detector and params.")
            detector = (key, _detector_class(value["detector"], trusted, path), value["params"])
            continue
        if isinstance(value, dict) and "tuple" in value:
            value = tuple(value["tuple"]) if isinstance(value["tuple"], list) else value
        elif isinstance(value, dict) and "labels" in value:
            value = _labels(value["labels"], f"parameter {key}", path)
        out[key] = value
    return out, detector


def _detector_class(qualified: str, trusted: list[str], path) -> type:
    try:
        from river.base import BinaryDriftDetector, DriftDetector
    except ImportError as exc:
        raise ModelFileError(
            f"{path}: the model's drift detector {qualified} needs river: pip install river."
        ) from exc
    return _import_class(
        qualified,
        trusted,
        ("river.drift.",),
        (DriftDetector, BinaryDriftDetector),
        "a river drift detector class",
        path,
    )


def _import_class(qualified: str, trusted: list[str], prefixes, bases, what: str, path):
    """The class named ``qualified``, imported only when its name is under ``prefixes`` or
    in ``trusted``, and returned only when it is a class of ``bases`` of that exact name."""
    if qualified not in trusted and not qualified.startswith(prefixes):
        raise ModelFileError(
            f"{path}: the model's class {qualified} is not trusted: pass "
            f"trusted=[{qualified!r}] to import it (or, for a module, module=an instance)."
        )
    module_name, _, name = qualified.rpartition(".")
    try:
        if "__" in qualified:
            raise ValueError("dunder names are never followed")
        obj = importlib.import_module(module_name)
        for part in name.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise _error(path, f"the model's class {qualified} cannot be imported", exc) from exc
    if not (isinstance(obj, type) and issubclass(obj, bases)):
        found = f"the class {obj.__qualname__}" if isinstance(obj, type) else type(obj).__name__
        raise ModelFileError(f"{path}: {qualified} names {found}, not {what}.")
    if f"{obj.__module__}.{obj.__qualname__}" != qualified:
        raise ModelFileError(
            f"{path}: {qualified} is another name for {obj.__module__}.{obj.__qualname__}; "
            "a model file names a class by its own name."
        )
    return obj


def _saved_device(saved, path):
    """The saved device when it exists here, else the CPU; a device skocl never trains on
    (``"meta"``, ``"xla"``, ...) is refused rather than giving a model that cannot run."""
    if saved == "auto":
        return saved
    try:
        wanted = torch.device(saved)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _error(path, f"device={saved!r} is not a device", exc) from exc
    if wanted.type == "cuda":
        here = torch.cuda.is_available() and (wanted.index or 0) < torch.cuda.device_count()
    elif wanted.type == "mps":
        here = torch.backends.mps.is_available()
    elif wanted.type == "cpu":
        here = True
    else:
        raise ModelFileError(f"{path}: device={saved!r} is not a device skocl runs on.")
    return saved if here else "cpu"


def _load_classifier(data: dict, tensors: dict, module, trusted: list[str], device, path):
    from ._classifier import OnlineFineTuneClassifier

    params, detector = _params_from_json(data["params"], trusted, path)
    spec = data["module"]
    if module is not None:
        params["module"] = module
    elif spec["kind"] == "class":
        params["module"] = _import_class(
            spec["class"], trusted, ("skocl.",), nn.Module, "a torch.nn.Module class", path
        )
    elif spec["kind"] == "instance":
        raise ModelFileError(
            f"{path}: this model was built from a {spec['class']} instance: pass an instance "
            "of it (any weights; they are replaced) as load(..., module=...)."
        )
    _check_sizes(data, params, tensors, module, path)
    try:
        if detector is not None:
            key, cls, detector_params = detector
            params[key] = cls(**detector_params)
        params["device"] = _saved_device(params.get("device"), path) if device is None else device
        clf = OnlineFineTuneClassifier(**params)
        clf._validate_params()
    except Exception as exc:
        raise _error(path, "the saved parameters are not valid", exc) from exc
    try:
        return clf._import_state(data["attrs"], tensors)
    except Exception as exc:  # the state does not fit the parameters: a malformed file
        raise _error(path, "the saved state does not fit the model", exc) from exc
