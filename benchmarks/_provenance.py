"""What a benchmark run measured: a short hash of the skocl code it imported."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def skocl_hash() -> str:
    """A short hash of the imported skocl modules' source, to pin the code measured."""
    h = hashlib.sha256()
    files = {
        getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] == "skocl"
    }
    for f in sorted(Path(f) for f in files if f):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]
