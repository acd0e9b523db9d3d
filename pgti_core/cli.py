"""Command-line plumbing shared by every command: one-line usage errors, defaults shown once in
``--help``, checked argument types, output locations checked before any work, and one-line data
errors.

``bench.run``, ``bench.plot``, ``bench.figures``, ``bench.calibrate``, ``bench.submit`` and
``python -m pgti_core.train`` all build their parser with :class:`ArgumentParser`, so a bad
invocation ends before any work with exit status 2 and a single line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pgti_core.data.errors import DataError, first_line

EXIT_USAGE = 2
EXIT_DATA = 1


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: appended unless the help text already names it; flags
    (``store_true``) and options without a default show none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False  # 0 is a default to show
        if "default" in text.lower() or unset or action.default == argparse.SUPPRESS:
            return text
        if action.required or isinstance(action, argparse._StoreConstAction):
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose usage errors are one line (``prog: error: ...``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        text = " ".join(str(message).split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {text} (see --help)\n")


def _number(kind: type, text: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def bounded(kind: type, low: float, high: float | None = None) -> Callable[[str], int | float]:
    """An argument type: a finite ``kind`` (int or float) with ``low <= value <= high``."""

    def parse(text: str) -> int | float:
        value = _number(kind, text)
        if value < low or (high is not None and value > high):
            span = f">= {low}" if high is None else f"in {low}..{high}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {low}..{high if high is not None else 'inf'}"
    return parse


def _positive(kind: type, text: str) -> int | float:
    value = _number(kind, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _positive(int, text)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _positive(float, text)


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


seed = bounded(int, 0, 2**32 - 1)
"""A random seed: an integer in 0..2**32-1 (what numpy and torch accept)."""


def _creatable(path: Path) -> None:
    """Raise ValueError unless files can be made in ``path``'s nearest existing ancestor."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{path}: {parent} is not a directory")
    try:  # a real probe: access() says yes to root even where files cannot be made (/proc)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise ValueError(f"{path}: cannot create files in {parent} ({exc.strerror})") from None


def check_output_file(path: str | os.PathLike) -> None:
    """Raise ValueError (one line) unless ``path`` can be written as a regular file; creates
    nothing. A FIFO, device or directory is refused (opening a FIFO would block)."""
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        _creatable(path)
        return
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path} is a directory; give a file path")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is not a regular file (a FIFO or device?)")
    if not os.access(path, os.W_OK):
        raise ValueError(f"{path} is not writable")
    _creatable(path)  # the file is replaced through a temporary beside it


def check_output_dir(path: str | os.PathLike) -> None:
    """Raise ValueError (one line) unless files can be written in directory ``path`` (made if
    missing); creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is not a directory")
    _creatable(path / "probe")


def check_input_file(path: str | os.PathLike) -> None:
    """Raise ValueError (one line) unless ``path`` is a regular file this process can read."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no file at {path}")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror})") from None


def one_line_data_errors(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command's ``main``: a data-file problem (:class:`DataError`) becomes one line
    on stderr and exit status 1 instead of a traceback."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except DataError as exc:
                print(f"{prog}: error: {first_line(exc)}", file=sys.stderr)
                return EXIT_DATA

        return run

    return wrap
