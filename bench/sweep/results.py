"""The results CSV: one row per sweep point and repeat (DESIGN.md § Results row), append-only.

Rows are appended whole (one ``os.write`` on an ``O_APPEND`` descriptor under an exclusive
``flock``, then ``fsync``), so a crash never leaves half a row and concurrent writers never
interleave; a re-run resumes by skipping the ``point_key`` values already written in complete,
well-formed rows (a damaged row is reported and its point re-run; the file is never rewritten).
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from pgti_core.cli import check_output_file

# Column -> kind ("str", "int", "float", "bool"), in file order. DESIGN's names are kept exactly;
# the extra columns sit in the section they belong to.
SCHEMA: dict[str, str] = {
    # identity
    "run_id": "str",
    "timestamp_utc": "str",
    "git_sha": "str",
    "pgti_version": "str",
    "point_key": "str",  # hash of the point's configuration incl. repeat, for resume
    "repeat": "int",
    "mode": "str",
    "status": "str",
    "error": "str",
    # configuration
    "strategy": "str",
    "model": "str",
    "dataset": "str",
    "nodes": "int",
    "steps": "int",
    "features": "int",
    "edges": "int",
    "lags": "int",
    "horizon": "int",
    "dtype": "str",
    "world_size": "int",
    "ranks_per_node": "int",
    "backend": "str",
    "device": "str",
    "batch_per_rank": "int",
    "global_batch": "int",
    "epochs": "int",
    "steps_per_rank": "int",
    "oversubscribed": "bool",  # local ranks x threads per rank above the usable cores
    "validation": "bool",  # an emulation of a world also measured here (projection check)
    "host_copy": "str",  # index: private (one copy per rank) or shared (one per node)
    # time (seconds unless named otherwise)
    "prep_s": "float",
    "train_s": "float",
    "total_s": "float",
    "epoch_s_mean": "float",
    "epoch_s_std": "float",
    "epoch_s_ci95": "float",  # 95% half-width (Student t) of the mean over the repeats so far
    "repeats_stop": "str",  # on a configuration's last repeat: "target" (interval reached) or "cap"
    "step_ms_p50": "float",
    "step_ms_p95": "float",
    "samples_per_s": "float",
    "data_wait_frac": "float",
    "host_foreign_cpu_frac": "float",  # share of the usable cores' time other work took meanwhile
    "noisy": "bool",  # host_foreign_cpu_frac above bench.sweep.noise.NOISY_FRAC
    # memory (bytes)
    "host_peak_pss_max_rank": "int",
    "host_peak_rss_max_rank": "int",
    "host_peak_uss_max_rank": "int",
    "host_baseline_pss": "int",
    "host_peak_node": "int",
    "host_resident_model_bytes": "int",
    "host_runtime_peak": "int",  # model-only probe: an idle rank (imports, process group)
    "host_model_peak": "int",  # probe: runtime + the model's training memory at this shape
    "host_data_peak": "int",  # host_peak_pss_max_rank - host_model_peak
    "host_rank_peaks_sum": "int",  # sum of one host's ranks' peaks (host_peak_node is sampled)
    "device_peak_allocated": "int",
    "device_peak_reserved": "int",
    "device_peak_nvml": "int",
    "device_model_peak": "int",  # probe: max_memory_allocated of the model's training (CUDA)
    "analytic_host_bytes": "int",
    "analytic_device_bytes": "int",
    "predicted_peak_node": "int",
    # quality
    "best_val_mae": "float",
    "best_val_rmse": "float",
    "best_val_mape": "float",
    "final_train_mae": "float",
    "test_mae": "float",
    # projection (empty when measured)
    "model_alpha_s": "float",
    "model_beta_Bps": "float",
    "data_bytes_per_step": "int",
    "cluster_memory_bytes": "int",
    "model_gather_s": "float",
    "projection_err_epoch_frac": "float",  # validation rows: emulated / measured epoch time - 1
    "projection_err_pss_frac": "float",  # validation rows: same for peak PSS per rank
    "notes": "str",
}
COLUMNS: tuple[str, ...] = tuple(SCHEMA)
# what resume treats as finished: skipped points are re-checked (the memory they lacked may be
# free now) and failed ones retried
DONE_STATUSES: tuple[str, ...] = ("ok", "oom")
# killed: a rank died of SIGKILL with no sign of the OOM killer (retried, like failed)
STATUSES: tuple[str, ...] = ("ok", "oom", "failed", "skipped", "killed")
MODES: tuple[str, ...] = ("measured", "emulated")

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def new_run_id() -> str:
    """A time-sortable, collision-safe id for one invocation of the sweep (``20250101T120000Z-1a2b3c``)."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def utc_now() -> str:
    """The current UTC time as ISO 8601 with seconds (``2025-01-01T12:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cell(name: str, value: object) -> str:
    """One value as its CSV text, checked against the column's kind."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy scalar, 0-d tensor
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    kind = SCHEMA[name]
    if kind == "str":
        return str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return str(value)
        raise ValueError(f"row[{name!r}]: expected a bool, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"row[{name!r}]: expected a number, got {value!r}")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"row[{name!r}]: expected an integer, got {value!r}")
        return str(int(value))
    return repr(float(value))


def _line(values: Iterable[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


HEADER = _line(COLUMNS)


def format_row(row: Mapping[str, object]) -> str:
    """The CSV line (with newline) of ``row``; unknown keys and ill-typed values raise ValueError.

    Args:
        row (Mapping[str, object]): column -> value; missing columns are written empty.
    """
    unknown = sorted(set(row) - set(SCHEMA))
    if unknown:
        raise ValueError(
            f"row: unknown column(s) {', '.join(unknown)}; see bench.sweep.results.COLUMNS"
        )
    for name, allowed in (("status", STATUSES), ("mode", MODES)):
        if row.get(name) not in (None, "") and row[name] not in allowed:
            raise ValueError(f"row[{name!r}]: {row[name]!r} is not one of {', '.join(allowed)}")
    return _line(_cell(c, row.get(c)) for c in COLUMNS)


def _read_header(fd: int) -> str:
    """The first line of the open file ``fd`` (with its newline, if any)."""
    chunk, offset = b"", 0
    while b"\n" not in chunk:
        more = os.pread(fd, 65536, offset)
        if not more:
            break
        chunk, offset = chunk + more, offset + len(more)
    return chunk.split(b"\n", 1)[0].decode() + "\n"


def _header_error(path: Path, header: str) -> str:
    return (
        f"{path}: header differs from this version's results schema "
        f"({len(header.split(','))} vs {len(COLUMNS)} columns); write to a new file"
    )


def append_row(path: str | os.PathLike, row: Mapping[str, object]) -> None:
    """Append one row to the CSV at ``path`` (header first if new), atomically and durably.

    Args:
        path (str | PathLike): the results CSV; parent directories are created.
        row (Mapping[str, object]): column -> value; see :data:`COLUMNS`.
    """
    path = Path(path)
    line = format_row(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size == 0:
            data = HEADER + line
        else:
            header = _read_header(fd)
            if header != HEADER:
                raise ValueError(_header_error(path, header))
            # A foreign writer's unterminated last line must not swallow ours.
            data = line if os.pread(fd, 1, size - 1) == b"\n" else "\n" + line
        buf = data.encode()
        while buf:
            buf = buf[os.write(fd, buf) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def check_writable(path: str | os.PathLike) -> None:
    """Raise ValueError (one line) unless rows can be appended at ``path``; creates nothing.

    An existing file must be a writable regular file (a FIFO would block) carrying this
    version's header; a new file needs its nearest existing ancestor to be a writable directory.

    Args:
        path (str | PathLike): the results CSV.
    """
    path = Path(path)
    check_output_file(path)
    if path.exists():
        with open(path, "rb") as fh:
            fd = fh.fileno()
            if os.fstat(fd).st_size and (header := _read_header(fd)) != HEADER:
                raise ValueError(_header_error(path, header))


def _typed(column: pd.Series, kind: str) -> pd.Series:
    """A column of CSV text converted to its kind; empty cells become missing values."""
    if kind == "str":
        return column.fillna("").astype(str)
    text = column.astype(str).str.strip()
    if kind == "bool":
        low = text.str.lower()
        out = pd.Series(pd.NA, index=column.index, dtype="boolean")
        out[low.isin(_TRUE)] = True
        out[low.isin(_FALSE)] = False
        return out
    values = pd.to_numeric(text.where(text != ""), errors="coerce").astype("float64")
    finite = values.dropna()
    if kind == "int" and bool((finite == finite.round()).all()):
        return values.astype("Int64")
    return values


def read_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All rows of one or more results CSVs as one typed DataFrame with :data:`COLUMNS` first.

    Files of an older schema are read too: their missing columns are empty (NaN, or ``""`` for
    text); columns this version does not know are kept (as text) after the known ones.

    Args:
        paths (path or iterable of paths): the CSV files, read in order.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    frames = []
    for p in paths:
        try:
            frame = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: not a readable CSV ({str(exc).splitlines()[0]})") from None
        if "status" not in frame.columns:
            raise ValueError(f"{p}: not a results CSV (no 'status' column in its header)")
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    extra = [c for c in raw.columns if c not in SCHEMA]
    out = {}
    for name, kind in SCHEMA.items():
        column = raw[name] if name in raw else pd.Series("", index=raw.index, dtype=str)
        out[name] = _typed(column, kind)
    for name in extra:
        out[name] = raw[name].astype(str)
    return pd.DataFrame(out, index=raw.index)


# what an ``ok`` row cannot lack: one without its time measured nothing
_OK_REQUIRED = ("total_s",)


def _damage(cells: list[str]) -> str:
    """Why a data row cannot be trusted ('' if it is complete and well-formed)."""
    if len(cells) != len(COLUMNS):
        return f"{len(cells)} of {len(COLUMNS)} fields"
    row = dict(zip(COLUMNS, cells, strict=True))
    if not row["point_key"]:
        return "no point_key"
    if row["status"] not in STATUSES or row["mode"] not in MODES:
        return f"status {row['status']!r} / mode {row['mode']!r} unknown"
    for name, kind in SCHEMA.items():
        text = row[name].strip()
        if not text or kind == "str":
            continue
        if kind == "bool":
            if text.lower() not in _TRUE | _FALSE:
                return f"{name} {text!r} is not a bool"
            continue
        try:
            value = float(text)
        except ValueError:
            return f"{name} {text!r} is not a number"
        if kind == "int" and not value.is_integer():
            return f"{name} {text!r} is not an integer"
    if row["status"] == "ok":
        missing = [c for c in _OK_REQUIRED if not row[c]]
        if missing:
            return f"an ok row without {', '.join(missing)}"
    return ""


def scan_rows(path: str | os.PathLike) -> tuple[list[dict[str, str]], list[str]]:
    """The complete, well-formed rows of the CSV at ``path`` and a line per damaged one.

    A row is trusted only if it ends with a newline, has every column of this version's header
    and each value parses as its column's kind; an ``ok`` row must also carry its times and
    metrics. The file is only read, never rewritten.

    Args:
        path (str | PathLike): the results CSV; a missing or empty file has no rows.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return [], []
    text = path.read_bytes().decode(errors="replace")
    header, _, body = text.partition("\n")
    if header + "\n" != HEADER:
        raise ValueError(_header_error(path, header + "\n"))
    complete = body.endswith("\n")
    good, damaged = [], []
    records = list(csv.reader(io.StringIO(body, newline="")))
    for i, cells in enumerate(records):
        if not cells:
            continue
        last = i == len(records) - 1
        why = "cut off (no newline at its end)" if last and not complete else _damage(cells)
        if why:
            damaged.append(f"{path} row {i + 1}: {why}")
        else:
            good.append(dict(zip(COLUMNS, cells, strict=True)))
    return good, damaged


def finished_keys(
    path: str | os.PathLike,
    statuses: Iterable[str] = STATUSES,
    damaged: list[str] | None = None,
) -> set[str]:
    """The ``point_key`` values of trusted rows in ``path`` whose status is one of ``statuses``.

    Args:
        path (str | PathLike): the results CSV; a missing file has none.
        statuses (Iterable[str], default all of :data:`STATUSES`): which outcomes count as done.
        damaged (list, optional): receives a line per damaged row (its point is not done).
    """
    rows, bad = scan_rows(path)
    if damaged is not None:
        damaged.extend(bad)
    wanted = set(statuses)
    return {r["point_key"] for r in rows if r["status"] in wanted}
