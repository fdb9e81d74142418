"""Generated data streams with concept drift, for demos, tests and benchmarks."""

from __future__ import annotations

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
