"""The rows of ``checks.csv``: one line per thing a GPU-check probe verified or measured."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

COLUMNS = ("check", "case", "status", "device", "value", "unit", "reference", "error")
"""``value`` is what was measured, ``reference`` what it is held against (empty when none)."""
STATUSES = ("ok", "failed", "skipped")


def device_label(device: torch.device | str | None = None) -> str:
    """The device as rows name it, e.g. ``cuda: NVIDIA H200``, or ``cpu``."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        return str(device)
    return f"cuda: {torch.cuda.get_device_name(device)}"


def row(check: str, case: str, status: str, **fields: object) -> dict:
    """One row; unknown fields or statuses are programming errors."""
    if status not in STATUSES:
        raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"fields: unknown {sorted(unknown)}; columns are {', '.join(COLUMNS)}")
    return {"check": check, "case": case, "status": status, **fields}


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, object]]) -> None:
    """Append ``rows`` to the CSV at ``path`` (header written when the file is new), flushed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in COLUMNS})
        f.flush()
        os.fsync(f.fileno())


def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (what a row's ``error`` holds)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
