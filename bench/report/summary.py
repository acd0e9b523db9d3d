"""Summaries of results rows: repeats aggregated, speedup and efficiency derived, markdown tables.

Speedup and efficiency are derived here from the rows' times, never stored (DESIGN.md § Results
row). Only ``status == ok`` rows carry numbers; the others are counted and listed as left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.sweep.repeats import half95
from pgti_core.data.datasets import parse_dataset_spec

FLOAT_BYTES = 4
BASELINE = "standard"
STRATEGY_ORDER: tuple[str, ...] = ("standard", "standard-dask", "index", "gpu-index", "partitioned")
# One figure per combination of these; rows agreeing on them and on strategy/world/mode are repeats.
FACETS: tuple[str, ...] = (
    "dataset",
    "model",
    "lags",
    "horizon",
    "batch_per_rank",
    "epochs",
    "device",
)
SERIES: tuple[str, ...] = ("strategy", "world_size", "mode")
GROUP: tuple[str, ...] = FACETS + SERIES
TIME_COLUMNS: tuple[str, ...] = ("total_s", "train_s", "epoch_s_mean")
# Aggregated as mean and sample std ("<name>_sd") over repeats.
METRICS: tuple[str, ...] = (
    "total_s",
    "train_s",
    "prep_s",
    "epoch_s_mean",
    "samples_per_s",
    "host_peak_pss_max_rank",
    "host_peak_node",
    "device_peak_allocated",
    "analytic_host_bytes",
    "analytic_device_bytes",
    "raw_bytes",
    "host_baseline_pss",
    "cluster_memory_bytes",
    "nodes",
    "steps",
)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per :data:`GROUP` with every status's row count and, from ok rows, mean/std metrics.

    A group with one run takes its ``epoch_s_mean_sd`` from the run's epoch-to-epoch ``epoch_s_std``.
    ``raw_bytes`` is the dataset's raw fp32 size, ``steps * nodes * features * 4``.

    Args:
        df (pandas.DataFrame): rows as returned by :func:`bench.sweep.results.read_results`.
    """
    df = df.assign(
        raw_bytes=df["steps"].astype("Float64")
        * df["nodes"].astype("Float64")
        * df["features"].astype("Float64")
        * FLOAT_BYTES
    )
    df = df[~_flag(df, "validation")]  # projection checks have their own table
    counts = df.groupby(list(GROUP), dropna=False)["status"].value_counts().unstack(fill_value=0)
    counts.columns = [f"n_{c}" for c in counts.columns]
    numeric = _ok(df)[list(GROUP) + list(METRICS) + ["epoch_s_std"]].copy()
    for c in (*METRICS, "epoch_s_std"):
        numeric[c] = numeric[c].astype("float64")
    grouped = numeric.groupby(list(GROUP), dropna=False)
    stats = grouped[list(METRICS)].mean().join(grouped[list(METRICS)].std(ddof=1).add_suffix("_sd"))
    single = grouped["epoch_s_std"].first().reindex(stats.index)
    one_run = grouped.size().reindex(stats.index) == 1
    stats["epoch_s_mean_sd"] = stats["epoch_s_mean_sd"].where(~one_run, single)
    ok = _ok(df)
    flags = ok[list(GROUP)].assign(
        oversubscribed_any=_flag(ok, "oversubscribed"), n_noisy=_flag(ok, "noisy").astype(int)
    )
    flags = flags.groupby(list(GROUP), dropna=False).agg(
        oversubscribed_any=("oversubscribed_any", "any"), n_noisy=("n_noisy", "sum")
    )
    stats = stats.join(flags)
    out = counts.join(stats, how="left").reset_index()
    return out.sort_values(list(FACETS) + ["strategy", "world_size", "mode"], key=_sort_key)


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    """A boolean column as plain bools, missing (older CSVs) as False."""
    if col not in df:
        return pd.Series(False, index=df.index)
    return df[col].fillna(False).astype(bool)


def _sort_key(col: pd.Series) -> pd.Series:
    return col.map(strategy_rank) if col.name == "strategy" else col


def strategy_rank(name: str) -> str:
    """Sort key putting the known strategies in their canonical order, others after by name."""
    rank = STRATEGY_ORDER.index(name) if name in STRATEGY_ORDER else len(STRATEGY_ORDER)
    return f"{rank:02d}{name}"


def _ratio_sd(r: pd.Series, m1, s1, m2, s2) -> pd.Series:
    """Std of r = m1/m2 by first-order propagation of independent relative errors."""
    return r.abs() * np.sqrt((s1.fillna(0) / m1) ** 2 + (s2.fillna(0) / m2) ** 2)


def _half95(sd: pd.Series, n: pd.Series) -> pd.Series:
    """Student-t 95% half-width of a mean from its repeats' std and count (NaN below two runs)."""
    pairs = zip(sd.astype("float64"), n.fillna(0).astype(int), strict=True)
    return pd.Series([half95(s, k) for s, k in pairs], index=sd.index, dtype="float64")


def with_speedups(agg: pd.DataFrame, time_col: str = "total_s") -> pd.DataFrame:
    """Add ``base_world``, ``base_time``, ``speedup``, ``efficiency``, ``vs_standard`` (with
    ``_sd`` and ``_ci95``: the ratio's std and its 95% half-width, each mean's Student-t
    half-width over its repeats propagated to first order; NaN when a side ran once).

    ``speedup`` is T(P0)/T(P) for the same strategy, P0 its smallest measured world (its smallest
    world if none was measured); ``efficiency`` = speedup / (P/P0); ``vs_standard`` is
    T_standard(P)/T(P) at the same world and mode.

    Args:
        agg (pandas.DataFrame): the output of :func:`aggregate`.
        time_col (str, default ``"total_s"``): which time to compare (one of :data:`TIME_COLUMNS`).
    """
    if time_col not in TIME_COLUMNS:
        raise ValueError(f"time_col: {time_col!r} is not one of {', '.join(TIME_COLUMNS)}")
    out = agg.copy()
    runs = out["n_ok"] if "n_ok" in out else pd.Series(0, index=out.index)
    out["_half"] = _half95(out[f"{time_col}_sd"], runs)
    line = list(FACETS) + ["strategy"]
    cand = out[out[time_col].notna()].assign(_measured=out["mode"] != "emulated")
    base = (
        cand.sort_values(["_measured", "world_size"], ascending=[False, True])
        .groupby(line, dropna=False)
        .head(1)[line + ["world_size", "mode", time_col, f"{time_col}_sd", "_half"]]
        .rename(
            columns={
                "world_size": "base_world",
                "mode": "_bmode",
                time_col: "base_time",
                f"{time_col}_sd": "_bsd",
                "_half": "_bhalf",
            }
        )
    )
    out = out.merge(base, on=line, how="left")
    t, sd, half = out[time_col], out[f"{time_col}_sd"], out["_half"]
    out["speedup"] = out["base_time"] / t
    is_base = (out["world_size"] == out["base_world"]) & (out["mode"] == out["_bmode"])
    out["speedup_sd"] = _ratio_sd(out["speedup"], out["base_time"], out["_bsd"], t, sd).where(
        ~is_base, 0.0
    )
    out["speedup_ci95"] = _ratio_half(out["speedup"], out["base_time"], out["_bhalf"], t, half)
    out["speedup_ci95"] = out["speedup_ci95"].where(~is_base, 0.0)
    scale = out["world_size"].astype("float64") / out["base_world"].astype("float64")
    out["efficiency"] = out["speedup"] / scale
    out["efficiency_sd"] = out["speedup_sd"] / scale
    out["efficiency_ci95"] = out["speedup_ci95"] / scale
    keys = list(FACETS) + ["world_size", "mode"]
    std = out[out["strategy"] == BASELINE][keys + [time_col, f"{time_col}_sd", "_half"]].rename(
        columns={time_col: "_st", f"{time_col}_sd": "_ssd", "_half": "_shalf"}
    )
    out = out.merge(std, on=keys, how="left")
    out["vs_standard"] = out["_st"] / out[time_col]
    not_base = out["strategy"] != BASELINE
    out["vs_standard_sd"] = _ratio_sd(out["vs_standard"], out["_st"], out["_ssd"], t, sd).where(
        not_base, 0.0
    )
    out["vs_standard_ci95"] = _ratio_half(
        out["vs_standard"], out["_st"], out["_shalf"], t, out["_half"]
    ).where(not_base, 0.0)
    return out.drop(columns=["_bmode", "_bsd", "_bhalf", "_st", "_ssd", "_shalf", "_half"])


def _ratio_half(r: pd.Series, m1, h1, m2, h2) -> pd.Series:
    """95% half-width of r = m1/m2 from the two means' half-widths (NaN if either is unknown)."""
    return r.abs() * np.sqrt((h1 / m1) ** 2 + (h2 / m2) ** 2)


def left_out(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with status other than ok, one line per group and status: count and first error."""
    bad = df[df["status"] != "ok"]
    keys = ["dataset", "model", "strategy", "world_size", "mode", "status"]
    if bad.empty:
        return pd.DataFrame(columns=[*keys, "rows", "first_error"])
    g = bad.groupby(keys, dropna=False, sort=False)
    return (
        g.size()
        .rename("rows")
        .to_frame()
        .join(g["error"].first().rename("first_error"))
        .reset_index()
    )


def left_out_lines(df: pd.DataFrame) -> list[str]:
    """One human line per left-out group (see :func:`left_out`)."""
    return [
        f"left out {r.rows} row(s) {r.dataset} {r.model} {r.strategy} P={_int(r.world_size)} "
        f"[{r.mode or '?'}] status={r.status or '?'}: {_one_line(r.first_error) or 'no error text'}"
        for r in left_out(df).itertuples()
    ]


def _int(v) -> str:
    return "?" if pd.isna(v) else str(int(v))


def _one_line(text: object) -> str:
    return re.sub(r"\s+", " ", str(text or "")).strip()


def dataset_title(label: str, nodes: object = None, steps: object = None) -> str:
    """What a results row's dataset is: ``synthetic metr-la profile, 207 nodes x 34272 steps`` or
    ``real data file:metr-la, ...`` (a synthetic series named like a real one is not that data)."""
    try:
        real = parse_dataset_spec(label).is_file
    except ValueError:  # a label this version cannot parse: say only what it is called
        return label
    kind = f"real data {label}" if real else f"synthetic {label} profile"
    if pd.notna(nodes) and pd.notna(steps) and nodes and steps:
        kind += f", {int(nodes)} nodes × {int(steps)} steps"
    return kind


def value_unit(label: str) -> str:
    """Unit of a dataset's values: ``mph`` for traffic speed (real or synthetic), ``a.u.`` for the
    synthetic signal of the other profiles."""
    try:
        return "mph" if parse_dataset_spec(label).profile.traffic else "a.u."
    except (ValueError, KeyError):
        return "series units"


def facet_title(d: Mapping[str, object]) -> str:
    """A short human title for one combination of (some of) the :data:`FACETS` values; with
    ``nodes`` and ``steps`` in ``d``, the dataset's size too."""
    parts = (
        [dataset_title(str(d["dataset"]), d.get("nodes"), d.get("steps"))] if "dataset" in d else []
    )
    parts += [str(d["model"])] if "model" in d else []
    if pd.notna(d.get("lags")) and pd.notna(d.get("horizon")):
        parts.append(f"{int(d['lags'])}/{int(d['horizon'])} windows")
    if pd.notna(d.get("batch_per_rank")):
        parts.append(f"batch {int(d['batch_per_rank'])}/rank")
    if pd.notna(d.get("epochs")):
        parts.append(f"{int(d['epochs'])} epoch(s)")
    if d.get("device"):
        dev = str(d["device"])
        parts.append(dev if len(dev) <= 40 else dev[:39] + "…")
    return " · ".join(parts)


def fmt_bytes(v: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; missing -> ``""``."""
    if pd.isna(v):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.3g} {unit}"
        v /= 1024
    return ""


def fmt_num(v: float) -> str:
    """Three significant digits, or thousands-grouped integers from 1,000 up."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def plus_minus(m: float, s: float, fmt=fmt_num) -> str:
    if pd.isna(m):
        return ""
    return fmt(m) + ("" if pd.isna(s) or s == 0 else " ± " + fmt(s))


def _ratio(v: float) -> str:
    return f"{v:.2f}"


def md_table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in esc),
    ]


PROJECTION_HEADER = (
    "dataset", "strategy", "P", "repeats (meas. / emul.)", "measured epoch (s)",
    "emulated epoch (s)", "epoch error", "measured PSS/rank", "emulated PSS/rank", "PSS error",
    "foreign CPU (meas. / emul.)",
)  # fmt: skip


def _pct(v: float) -> str:
    return "?" if pd.isna(v) else f"{v:.0%}"


def projection_lines(df: pd.DataFrame) -> list[str]:
    """The projection check: emulated vs measured epoch time and peak PSS at the same world."""
    from bench.perf.validate import projection_checks

    checks = projection_checks(df) if "validation" in df and len(df) else pd.DataFrame()
    if checks.empty:
        return []
    rows = [
        [c.dataset, c.strategy, _int(c.world_size), f"{c.n_measured} / {c.n_emulated}",
         fmt_num(c.measured_epoch_s_mean), fmt_num(c.emulated_epoch_s_mean),
         f"{c.projection_err_epoch_frac:+.1%}", fmt_bytes(c.measured_host_peak_pss_max_rank),
         fmt_bytes(c.emulated_host_peak_pss_max_rank), f"{c.projection_err_pss_frac:+.1%}",
         f"{_pct(c.foreign_measured)} / {_pct(c.foreign_emulated)}"]
        for c in checks.itertuples()
    ]  # fmt: skip
    return [
        "",
        "## Projection check (emulated vs measured at the same world size)",
        "",
        "The sweep emulated its largest measured world too: real ranks without a process group, "
        "the all-reduce modelled. Error = emulated / measured - 1 of the means over repeats; "
        "foreign CPU = the share of the cores other work took meanwhile (on a busy host the "
        "errors measure its noise as much as the model).",
        "",
        *md_table(PROJECTION_HEADER, rows),
    ]


def summary_markdown(
    df: pd.DataFrame, figures: Sequence[Path] = (), time_col: str = "total_s"
) -> str:
    """The markdown summary: per figure group, the numbers behind the figures; then left-out rows.

    Args:
        df (pandas.DataFrame): all rows (any status), as from :func:`bench.sweep.results.read_results`.
        figures (Sequence[Path], default none): figure files to list (linked by file name).
        time_col (str, default ``"total_s"``): the time speedup is computed from.
    """
    lines = [
        "# Results summary",
        "",
        f"{len(df)} row(s): "
        + ", ".join(f"{n} {s or '?'}" for s, n in df["status"].value_counts().items())
        + ". Times and rates are mean ± std over repeats of `status == ok` rows; speedup, "
        f"vs {BASELINE} and efficiency carry their 95% interval (each mean's Student-t "
        "half-width over its repeats, propagated to first order; none where a side ran once). "
        f"Speedup = T(P0)/T(P) of the same strategy with T = `{time_col}` and P0 its smallest "
        f"measured world; efficiency = speedup/(P/P0); vs {BASELINE} = T_{BASELINE}(P)/T(P). "
        "Emulated rows have projected times and measured per-rank memory.",
    ]
    agg = with_speedups(aggregate(df), time_col) if len(df) else pd.DataFrame()
    header = [
        "strategy", "P", "mode", "runs", "total (s)", "epoch (s)", "samples/s", f"speedup ({time_col})",
        f"vs {BASELINE}", "efficiency", "host PSS/rank", "host node", "device peak", "analytic host",
    ]  # fmt: skip
    for key, part in agg.groupby(list(FACETS), dropna=False, sort=False) if len(agg) else ():
        rows = []
        for r in part.itertuples():
            runs = ", ".join(
                f"{getattr(r, c)} {c[2:]}"
                for c in part.columns
                if c.startswith("n_") and getattr(r, c)
            )
            rows.append([
                r.strategy, _int(r.world_size), r.mode, runs,
                plus_minus(r.total_s, r.total_s_sd), plus_minus(r.epoch_s_mean, r.epoch_s_mean_sd),
                plus_minus(r.samples_per_s, r.samples_per_s_sd), plus_minus(r.speedup, r.speedup_ci95, _ratio),
                plus_minus(r.vs_standard, r.vs_standard_ci95, _ratio), plus_minus(r.efficiency, r.efficiency_ci95, _ratio),
                fmt_bytes(r.host_peak_pss_max_rank), fmt_bytes(r.host_peak_node),
                fmt_bytes(r.device_peak_allocated), fmt_bytes(r.analytic_host_bytes),
            ])  # fmt: skip
        lines += [
            "",
            f"## {facet_title(dict(zip(FACETS, key, strict=True)))}",
            "",
            *md_table(header, rows),
        ]
    lines += projection_lines(df)
    lo = left_out(df)
    lines += ["", "## Left out of the plots (status other than ok)", ""]
    if lo.empty:
        lines.append("None.")
    else:
        lines += md_table(
            ["dataset", "model", "strategy", "P", "mode", "status", "rows", "first error"],
            [
                [r.dataset, r.model, r.strategy, _int(r.world_size), r.mode, r.status, str(r.rows), _one_line(r.first_error)]
                for r in lo.itertuples()
            ],
        )  # fmt: skip
    lines += ["", "## Figures", ""]
    stems = dict.fromkeys(p.with_suffix("") for p in figures)
    lines += [
        f"- {stem.name}: "
        + ", ".join(f"[{p.suffix[1:]}]({p.name})" for p in figures if p.with_suffix("") == stem)
        for stem in stems
    ] or ["None: no ok row with times or memory values to plot."]
    return "\n".join(lines) + "\n"
