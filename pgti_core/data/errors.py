"""The one error type of data problems (a bad dataset file, a bad cache entry), so every command
can print it as one line."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file or cache entry cannot give a meaningful series; the message says which
    file and what to do."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The one line that says what went wrong in ``exc``'s message, at most ``limit`` characters:
    its first non-empty line, or the last one when the message embeds a library's trace (HDF5's
    ``File "H5F.c", line 788 ...`` lines), whose summary comes at the end."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    traced = any(ln.startswith(('File "', "Traceback")) for ln in lines)
    return (lines[-1] if traced else lines[0])[:limit]
