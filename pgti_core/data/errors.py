"""The one error type of data problems (a bad dataset file, a bad cache entry), so every command
can print it as one line."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file or cache entry cannot give a meaningful series; the message says which
    file and what to do."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message (no embedded library trace), at most
    ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]
