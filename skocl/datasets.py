"""Data for demos, tests and benchmarks: generated streams with concept drift, and a
text corpus that ships offline (the docstrings of installed packages)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state


def make_drift_stream(
    n_samples: int = 20_000,
    n_features: int = 20,
    n_classes: int = 4,
    *,
    drift_points=(0.5,),
    kind: str = "abrupt",
    width: int = 1000,
    severity: float = 0.6,
    noise: float = 0.05,
    random_state=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A classification stream whose concept changes at given points.

    Rows are standard normal. Each concept labels them with a random one-hidden-layer
    teacher network, ``y = argmax(tanh(X W1) W2)``; at each drift the teacher's weights
    move to ``sqrt(1 - severity**2) * W + severity * W_new``, so part of what was learned
    still holds. Abrupt drift switches at once; gradual drift draws each row from the
    new concept with a probability rising linearly over ``width`` rows.

    Parameters
    ----------
    n_samples : int, default=20000
        Rows in the stream.
    n_features : int, default=20
        Features per row.
    n_classes : int, default=4
        Number of classes.
    drift_points : sequence of float or int, default=(0.5,)
        Where the concept changes: fractions of the stream (floats) or row indices.
    kind : {"abrupt", "gradual"}, default="abrupt"
        How the concept changes.
    width : int, default=1000
        Rows over which a gradual drift happens (centred on the drift point).
    severity : float, default=0.6
        How far each drift moves the teacher, between 0 (no change) and 1 (a new one).
    noise : float, default=0.05
        Share of labels replaced by random ones.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    drifts : ndarray of int
        Row indices of the drift points.

    Examples
    --------
    >>> from skocl.datasets import make_drift_stream
    >>> X, y, drifts = make_drift_stream(1000, 5, 3, drift_points=(0.5,), random_state=0)
    >>> X.shape, sorted(set(y.tolist())), drifts.tolist()
    ((1000, 5), [0, 1, 2], [500])
    """
    if kind not in ("abrupt", "gradual"):
        raise ValueError(f"kind must be 'abrupt' or 'gradual', got {kind!r}.")
    if not 0 <= severity <= 1:
        raise ValueError(f"severity must be in [0, 1], got {severity}.")
    rng = check_random_state(random_state)
    drifts = np.array(
        sorted(int(p * n_samples) if isinstance(p, float) else int(p) for p in drift_points),
        dtype=int,
    )
    hidden = 2 * n_features

    def teacher():
        return rng.normal(size=(n_features, hidden)), rng.normal(size=(hidden, n_classes))

    concepts = [teacher()]
    keep = np.sqrt(1 - severity**2)
    for _ in drifts:
        W1, W2 = concepts[-1]
        N1, N2 = teacher()
        concepts.append((keep * W1 + severity * N1, keep * W2 + severity * N2))

    X = rng.normal(size=(n_samples, n_features))
    rows = np.arange(n_samples)
    concept = np.searchsorted(drifts, rows, side="right")
    if kind == "gradual":
        # Before each drift point's window ends, a row may still come from the old concept.
        for k, point in enumerate(drifts):
            lo, hi = point - width // 2, point + width // 2
            inside = (rows >= lo) & (rows < hi)
            p_new = (rows[inside] - lo) / max(hi - lo, 1)
            concept[inside] = np.where(rng.rand(inside.sum()) < p_new, k + 1, k)
    y = np.empty(n_samples, dtype=int)
    for c, (W1, W2) in enumerate(concepts):
        mask = concept == c
        y[mask] = np.argmax(np.tanh(X[mask] @ W1 / np.sqrt(n_features)) @ W2, axis=1)
    flip = rng.rand(n_samples) < noise
    y[flip] = rng.randint(n_classes, size=flip.sum())
    return X, y, drifts


DOCSTRING_PACKAGES = ("numpy", "scipy", "sklearn", "torch", "skorch")


def load_docstrings(
    packages=DOCSTRING_PACKAGES,
    *,
    min_length: int = 40,
    shuffle: bool = True,
    random_state=0,
    data_home=None,
) -> tuple[list[str], np.ndarray]:
    """A text classification corpus that ships offline: docstrings of installed packages,
    labelled by the package they come from.

    The docstrings of every module, class, function and method (top level and in
    classes) of each package's Python source are read with :mod:`ast`, nothing is
    imported, and test folders (``tests``, ``testing``) are skipped. A docstring seen
    before (in an earlier package or file) is left out, so no text carries two labels.
    The order is deterministic for the installed versions: packages in the order given,
    files in sorted path order, docstrings in source order; then shuffled by
    ``random_state`` when ``shuffle`` is true.

    Parsing a large package takes seconds to a minute (torch), so the docstrings of
    each package are cached under ``data_home`` in a file keyed by the package's
    files (paths, sizes, modification times) and the Python version: an upgrade is
    read afresh.

    Parameters
    ----------
    packages : sequence of str, default=("numpy", "scipy", "sklearn", "torch", "skorch")
        Importable package (or subpackage) names; each is a class. The default ones
        are skocl's own dependencies, so they are always installed.
    min_length : int, default=40
        Shortest docstring kept, in characters.
    shuffle : bool, default=True
        Shuffle the documents (a stream in source order has one class after another).
    random_state : int, RandomState instance or None, default=0
        Seed of the shuffle.
    data_home : str or path-like, default=None
        Cache folder; scikit-learn's data home when None (``~/scikit_learn_data``, or
        ``$SCIKIT_LEARN_DATA``). ``False`` turns the cache off.

    Returns
    -------
    texts : list of str
        The docstrings.
    labels : ndarray of str of shape (n_documents,)
        The package each docstring comes from.

    Examples
    --------
    >>> from skocl.datasets import load_docstrings
    >>> texts, labels = load_docstrings(["skocl", "sklearn.feature_extraction"],
    ...                                 data_home=False)
    >>> sorted(set(labels.tolist()))
    ['sklearn.feature_extraction', 'skocl']
    >>> len(texts) == len(labels) and min(map(len, texts)) >= 40
    True
    """
    if isinstance(packages, str):
        packages = [packages]
    if not len(packages):
        raise ValueError("packages is empty: name at least one installed package.")
    if len(set(packages)) != len(packages):
        raise ValueError(f"packages has repeated names: {list(packages)}.")
    sources = [_package_files(name) for name in packages]
    texts, labels, seen = [], [], set()
    for name, (root, files) in zip(packages, sources):
        for doc in _package_docstrings(name, root, files, data_home):
            if len(doc) >= min_length and doc not in seen:
                seen.add(doc)
                texts.append(doc)
                labels.append(name)
    labels = np.asarray(labels, dtype=str)
    if shuffle:
        order = check_random_state(random_state).permutation(len(texts))
        texts, labels = [texts[i] for i in order], labels[order]
    return texts, labels


def _package_files(name: str) -> tuple[Path, list[Path]]:
    """The folder and sorted source files of an installed package (not imported)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise ValueError(
            f"Package {name!r} is not installed: install it or leave it out of packages."
        )
    if not spec.submodule_search_locations:  # a single module
        path = Path(spec.origin)
        return path.parent, [path] if path.suffix == ".py" else []
    root = Path(list(spec.submodule_search_locations)[0])
    skip = {"tests", "testing"}
    files = sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts[:-1]))
    return root, files


def _package_docstrings(name: str, root: Path, files: list[Path], data_home) -> list[str]:
    """All docstrings of ``files`` in order, from the cache when it is current."""
    key = hashlib.sha1(repr(sys.version_info[:2]).encode())
    for f in files:
        st = f.stat()
        key.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    cache = None
    if data_home is not False:
        from sklearn.datasets import get_data_home

        folder = Path(get_data_home(data_home)) / "skocl_docstrings"
        cache = folder / f"{name}-{key.hexdigest()[:16]}.json"
        if cache.exists():
            return json.loads(cache.read_text(encoding="utf-8"))
    docs = [doc for f in files for doc in _file_docstrings(f)]
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(docs, out)
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only home: work without the cache
    return docs


def _file_docstrings(path: Path) -> list[str]:
    """Docstrings of a module, its top-level classes and functions, and methods."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []
    nodes: list[ast.AST] = [tree]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nodes.append(node)
        elif isinstance(node, ast.ClassDef):
            nodes.append(node)
            nodes += [
                m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
            ]
    docs = (ast.get_docstring(n) for n in nodes)
    return [d for d in docs if d]
