"""``python -m skocl``: the same as the ``skocl`` command."""

from .cli import main

raise SystemExit(main())
