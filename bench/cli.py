"""Argument types shared by the harness's commands: each rejects bad text with one clear line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from pgti_core.cli import (  # noqa: F401 - re-exported: the harness's commands use them from here
    ArgumentParser,
    bounded,
    check_input_file,
    check_output_dir,
    check_output_file,
    nonneg_float,
    one_line_data_errors,
    positive_float,
    positive_int,
    seed,
)
from pgti_core.data.errors import first_line

MAX_WORLD = 1 << 20


def int_list(text: str) -> list[int]:
    """``"1,8,128"`` -> ``[1, 8, 128]``; distinct integers in 1..:data:`MAX_WORLD`."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(not 1 <= v <= MAX_WORLD for v in values):
        raise argparse.ArgumentTypeError(f"expected integers in 1..{MAX_WORLD}, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a value is repeated in {text!r}")
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


def scheduler_file(text: str) -> Path:
    """A Dask scheduler file (``dask scheduler --scheduler-file``): readable JSON naming the
    scheduler's ``address``; checked now, so a bad file cannot stall every point."""
    path = Path(text)
    try:
        check_input_file(path)
        info = json.loads(path.read_text())
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"not a Dask scheduler file: {first_line(exc)}") from None
    if not isinstance(info, dict) or not isinstance(info.get("address"), str):
        raise argparse.ArgumentTypeError(f"{path} names no scheduler 'address'")
    return path
