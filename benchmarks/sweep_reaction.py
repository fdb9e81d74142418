"""The margin of the drift monitor's reaction to a detection, set for the run (issue 10,
targets 3a and 5b; DEFAULTS.md, "A floor on the reaction margin").

A detection calls for a reaction when the chunk's error rate exceeds the recent level by
more than ``max(REACTION_Z * SE, REACTION_REL * level)``, SE the binomial standard error
of the chunk's rate (:class:`skocl._drift.DriftMonitor`). ``--z`` and ``--rel`` set the
two for the run (``--rel 0``: the rule before the floor). Everything after ``--`` goes
to ``bench_defaults.py``::

    python benchmarks/sweep_reaction.py --rel 0 -- --parts drift --no-peers \\
        --stationary-rows 1000000
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from skocl import _drift  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z", type=float, default=_drift.REACTION_Z)
    parser.add_argument("--rel", type=float, default=_drift.REACTION_REL)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    _drift.REACTION_Z, _drift.REACTION_REL = args.z, args.rel  # read at each reaction
    print(f"reaction margin: max({args.z:g} SE, {args.rel:g} x level)")
    importlib.import_module("bench_defaults").main(argv[split + 1 :])


if __name__ == "__main__":
    main()
