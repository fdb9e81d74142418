"""The package's one progress bar: tqdm, drawn only on a terminal and only when asked.

Logs, notebooks run as scripts and CI jobs stay clean: without ``verbose``, without a
terminal on standard error, or without tqdm installed, the bar is a silent stand-in with
the same methods.
"""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """A tqdm bar, or nothing: ``update`` and ``close`` work the same either way.

    Use :func:`progress_bar` to make one.

    Attributes
    ----------
    shown : bool
        Whether a bar is drawn.
    """

    def __init__(self, bar: Any = None) -> None:
        self._bar = bar
        self.shown = bar is not None

    def update(self, n: int, postfix: dict[str, str] | None = None) -> None:
        """Advance by ``n`` units and, when given, show ``postfix`` next to the bar."""
        if self._bar is None:
            return
        self._bar.update(n)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        """Finish the bar (a no-op when none is drawn)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def progress_bar(
    verbose: int | bool, *, unit: str = " rows", total: int | None = None
) -> ProgressBar:
    """A progress bar on standard error when ``verbose`` and it is a terminal.

    Parameters
    ----------
    verbose : int or bool
        0 or False: never drawn.
    unit : str, default=" rows"
        What one step of ``update`` counts. Rows are shown scaled (``12.3k rows``).
    total : int, default=None
        The number of units, when known (then the bar shows a percentage).

    Returns
    -------
    bar : ProgressBar
        Drawn with tqdm when ``verbose``, standard error is a terminal and tqdm is
        installed; otherwise silent.

    Examples
    --------
    >>> from skocl._progress import progress_bar
    >>> with progress_bar(0) as bar:
    ...     bar.update(100, {"accuracy": "0.9"})
    >>> bar.shown
    False
    """
    if not verbose or not sys.stderr.isatty():
        return ProgressBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return ProgressBar()
    return ProgressBar(
        tqdm(
            total=total,
            unit=unit,
            unit_scale=unit == " rows",
            dynamic_ncols=True,
            file=sys.stderr,
        )
    )
