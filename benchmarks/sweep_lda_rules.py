"""Rules for the head's closed-form candidate (``"lda"`` in ``head_rates``) that the
library does not follow, measured through ``bench_defaults.py`` or
``bench_head_rates.py`` with the learner patched for the run (issue 10; DEFAULTS.md, "a
closed-form head", "measured and not taken"):

* ``--from-scratch``: the head has candidates from the first ``partial_fit``, not only
  after a ``fit`` (the copies' rule keeps ``head_lr`` alone for a head still learning);
* ``--count-replayed``: the candidate counts the replayed rows of the head's fine-tune
  too (their features from the trunk of now), not only the chunk's;
* ``--max-rows N``: ``skocl._lda_head.MAX_ROWS`` (the rows' weight the statistics keep).

Every other argument goes to the benchmark named first::

    python benchmarks/sweep_lda_rules.py bench_defaults --from-scratch --count-replayed \\
        --max-rows 2000 -- --parts continual,quality --no-peers --seeds 3 \\
        --river-rows 20000 --no-baseline --candidate "head_rates=(1.0,'lda')"
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from skocl import _head_rates, _lda_head, _learner  # noqa: E402


def patch(from_scratch: bool, count_replayed: bool) -> None:
    several_rates = _learner.OnlineLearner._several_rates
    fine_tune = _head_rates.HeadRates.fine_tune

    def _several_rates(self, s):
        if from_scratch and self.anchor is None and not self.user_module:
            rates = self.rates
            if rates is not None and rates.weight is None and not rates.off:
                if len(rates.spec) >= 2 and s.head_steps and s.head_lr > 0:
                    with self.rng.generator() as gen:
                        memory = self._memory_features(gen) if rates.wants_lda else None
                        rates.start(self.head, s.optimizer, True, memory)
        return several_rates(self, s)

    def _fine_tune(self, *args, new=None, **kwargs):
        return fine_tune(self, *args, new=None if count_replayed else new, **kwargs)

    _learner.OnlineLearner._several_rates = _several_rates
    _head_rates.HeadRates.fine_tune = _fine_tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=["bench_defaults", "bench_head_rates"])
    parser.add_argument("--from-scratch", action="store_true")
    parser.add_argument("--count-replayed", action="store_true")
    parser.add_argument("--max-rows", type=float)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    if args.max_rows is not None:
        _lda_head.MAX_ROWS = args.max_rows
    patch(args.from_scratch, args.count_replayed)
    print(
        f"rules: from_scratch={args.from_scratch} count_replayed={args.count_replayed} "
        f"MAX_ROWS={_lda_head.MAX_ROWS:g}"
    )
    importlib.import_module(args.bench).main(argv[split + 1 :])


if __name__ == "__main__":
    main()
