"""Argument types shared by the harness's commands: each rejects bad text with one clear line."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable


def int_list(text: str) -> list[int]:
    """``"1,8,128"`` -> ``[1, 8, 128]``; every value must be an integer >= 1."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def names(known: Iterable[str]) -> Callable[[str], list[str]]:
    """A parser of comma-separated names, each one of ``known``."""
    known = tuple(known)

    def parse(text: str) -> list[str]:
        found = [v.strip() for v in text.split(",") if v.strip()]
        bad = [n for n in found if n not in known]
        if not found or bad:
            raise argparse.ArgumentTypeError(
                f"unknown {bad or text!r}; choose from {', '.join(known)}"
            )
        return found

    return parse


def _positive(kind: type, text: str) -> int | float:
    try:
        v = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _positive(int, text)


def positive_float(text: str) -> float:
    """A number > 0."""
    return _positive(float, text)
