"""Progress bars (tqdm) for the long steps: building or converting a dataset, checking a cache
checksum, the stages of ``bench.figures`` and the points of a sweep.

A bar is drawn on stderr only when stderr is a terminal (tqdm's ``disable=None``), and never
under a command's ``--quiet``: :func:`set_quiet` records that in the environment (``PGTI_QUIET``)
so that the processes a command starts (sweep ranks, training runs) stay quiet too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm import tqdm

QUIET_ENV = "PGTI_QUIET"


def set_quiet(quiet: bool = True) -> None:
    """Silence (or re-enable) every bar of this process and of the processes it starts."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


def is_quiet() -> bool:
    """Whether :func:`set_quiet` (or an inherited ``PGTI_QUIET=1``) silenced the bars."""
    return os.environ.get(QUIET_ENV, "") not in ("", "0")


def progress(iterable: Iterable | None = None, *, quiet: bool = False, **kwargs) -> tqdm:
    """A tqdm bar on stderr: off under ``quiet``, :func:`is_quiet`, or when stderr is no terminal.

    Args:
        iterable: what to iterate over (``None``: update the bar by hand).
        quiet: this caller's own ``--quiet``.
        **kwargs: passed to :class:`tqdm.tqdm` (``total``, ``desc``, ``unit``, ...).
    """
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=True if quiet or is_quiet() else None, **kwargs)
