"""Class labels to and from JSON, keeping their numpy dtype."""

from __future__ import annotations

import numpy as np


def labels_to_json(labels: np.ndarray) -> dict:
    """``{"dtype": ..., "values": [...]}`` for an array of ints, floats, bools or strings."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biufUO":
        raise TypeError(f"Cannot save class labels of dtype {labels.dtype}.")
    values = labels.tolist()
    if labels.dtype.kind == "O" and not all(
        isinstance(v, (str, int, float, bool)) for v in values
    ):
        raise TypeError("Cannot save class labels that are not str, int, float or bool.")
    return {"dtype": labels.dtype.str if labels.dtype.kind != "O" else "object", "values": values}


def labels_from_json(data: dict) -> np.ndarray:
    if data["dtype"] == "object":
        out = np.empty(len(data["values"]), dtype=object)
        out[:] = data["values"]
        return out
    return np.asarray(data["values"], dtype=np.dtype(data["dtype"]))
