"""Projection check: emulated points against the measured points of the same world.

A sweep with emulated worlds also emulates its largest measured world (see
:func:`bench.sweep.plan.with_validation`). Each validation row carries the relative error of its
projected epoch time and of its peak PSS per rank against the mean of the measured repeats
(:func:`projection_errors`); :func:`projection_checks` tabulates them per configuration.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

# what must match between the emulated and the measured rows of one check
SAME = ("dataset", "strategy", "model", "world_size", "epochs", "batch_per_rank", "steps_per_rank")
ERRORS = {
    "projection_err_epoch_frac": "epoch_s_mean",
    "projection_err_pss_frac": "host_peak_pss_max_rank",
}


def _measured(df: pd.DataFrame, row: Mapping[str, object]) -> pd.DataFrame:
    mask = (df["mode"] == "measured") & (df["status"] == "ok")
    for col in SAME:
        mask &= df[col] == row[col]
    return df[mask]


def projection_errors(row: Mapping[str, object], df: pd.DataFrame) -> dict[str, float | None]:
    """``emulated / measured - 1`` of epoch time and peak PSS per rank for validation ``row``,
    against the ok measured rows of the same configuration in ``df`` (None without any)."""
    measured = _measured(df, row) if row.get("status") == "ok" and len(df) else df.iloc[:0]
    out: dict[str, float | None] = dict.fromkeys(ERRORS)
    for name, col in ERRORS.items():
        ref = measured[col].mean() if len(measured) else None
        if ref and row.get(col) is not None:
            out[name] = float(row[col]) / float(ref) - 1
    return out


def projection_checks(df: pd.DataFrame) -> pd.DataFrame:
    """One line per validated configuration: measured and emulated means (epoch time, peak PSS
    per rank), their repeats and the relative errors of the emulation."""
    val = df[(df["status"] == "ok") & df["validation"].fillna(False).astype(bool)]
    lines = []
    for key, emu in val.groupby(list(SAME), dropna=False, sort=False):
        row = dict(zip(SAME, key, strict=True))
        meas = _measured(df, row)
        if meas.empty:
            continue
        line = dict(row, n_measured=len(meas), n_emulated=len(emu))
        line["foreign_measured"] = meas["host_foreign_cpu_frac"].mean()
        line["foreign_emulated"] = emu["host_foreign_cpu_frac"].mean()
        for name, col in ERRORS.items():
            line[f"measured_{col}"] = meas[col].mean()
            line[f"emulated_{col}"] = emu[col].mean()
            line[name] = emu[col].mean() / meas[col].mean() - 1
        lines.append(line)
    return pd.DataFrame(lines)
