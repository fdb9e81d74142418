"""skocl: online and incremental fine-tuning of PyTorch classifiers, the sklearn way.

The public names are imported on first use (PEP 562), so that ``skocl --help`` and
``import skocl.cli`` answer without importing torch.
"""

from __future__ import annotations

import importlib

from ._version import __version__ as __version__  # re-exported

# public name -> the module that defines it
_HOMES = {
    "OnlineFineTuneClassifier": "._classifier",
    "StreamPipeline": ".pipeline",
    "TaskHeads": "._tasks",
    "TrunkHeadNet": "._modules",
    "load": "._persist",
    "make_stream_pipeline": ".pipeline",
    "save": "._persist",
}

__all__ = sorted([*_HOMES, "__version__"])


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'skocl' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
