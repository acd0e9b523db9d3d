"""Figure 7: total time vs world size, standard-DDP vs distributed-index, with the ideal line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report.axes import (
    draw_series,
    save_figure,
    seconds_axis,
    strategy_styles,
    suptitle,
    world_axis,
    world_label,
)
from bench.report.paper import DISTRIBUTED_INDEX, STANDARD_DDP, outdir
from bench.report.summary import aggregate


def _pick(present: set[str], choices: Sequence[str]) -> str | None:
    return next((c for c in choices if c in present), None)


def _gap_text(agg: pd.DataFrame, slow: str, fast: str) -> str:
    """How many times faster ``fast`` is than ``slow`` at the largest world both have."""
    t = agg.pivot_table(index="world_size", columns="strategy", values="total", aggfunc="min")
    if slow not in t or fast not in t or t[[slow, fast]].dropna().empty:
        return ""
    p = int(t[[slow, fast]].dropna().index.max())
    return f"at P = {p}: {fast} {t.loc[p, slow] / t.loc[p, fast]:.1f}× faster than {slow}"


def figure7(df: pd.DataFrame, out_dir: str | Path, title: str = "") -> list[Path]:
    """Total time vs world size, standard-DDP vs distributed-index, with the ideal T(1)/P line.

    Uses ``standard-dask`` rows when present (else ``standard``) and ``gpu-index`` when present
    (else ``index``). Emulated points are hollow on dashed lines; error bars are std over repeats.

    Args:
        df: results rows (any status), as from :func:`bench.sweep.results.read_results`.
        out_dir: where ``figure7.png``/``.svg`` go.
        title: figure title (default: names the dataset).
    """
    agg = aggregate(df)
    agg = agg[agg["n_ok"] > 0] if "n_ok" in agg else agg.iloc[:0]
    present = set(agg["strategy"])
    picked = {"standard-DDP": _pick(present, STANDARD_DDP),
              "distributed-index": _pick(present, DISTRIBUTED_INDEX)}  # fmt: skip
    lines = {label: s for label, s in picked.items() if s is not None}
    if not lines:
        raise ValueError("df: no ok rows of standard(-dask) or (gpu-)index to plot")
    scale, unit = (60.0, "min") if float(agg["total_s"].max()) > 600 else (1.0, "s")
    agg = agg.assign(total=agg["total_s"] / scale, total_sd=agg["total_s_sd"] / scale)
    styles = strategy_styles(lines.values())
    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = fig.subplots()
    worlds = sorted(int(w) for w in agg["world_size"].unique())
    handles = []
    for label, strategy in lines.items():
        color, marker = styles[strategy]
        draw_series(
            ax,
            agg[agg["strategy"] == strategy],
            "world_size",
            "total",
            (color, marker),
            bridge=True,
        )
        handles.append(Line2D([], [], color=color, marker=marker, label=f"{label} ({strategy})"))
    ideal_of = lines.get("distributed-index") or next(iter(lines.values()))
    base = agg[(agg["strategy"] == ideal_of) & (agg["mode"] != "emulated")].nsmallest(
        1, "world_size"
    )
    if len(base):
        p0, t0 = int(base["world_size"].iloc[0]), float(base["total"].iloc[0])
        xs = [w for w in worlds if w >= p0]
        ax.plot(xs, [t0 * p0 / w for w in xs], color="black", linestyle=":", linewidth=1.2)
        ideal = "T(1)/P" if p0 == 1 else f"T({p0})·{p0}/P"
        handles.append(
            Line2D([], [], color="black", linestyle=":", label=f"ideal {ideal} of {ideal_of}")
        )
    handles.append(Line2D([], [], color="0.3", marker="o", label="measured"))
    if (agg["mode"] == "emulated").any():
        handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white",
                              linestyle="--", label="emulated (projected time)"))  # fmt: skip
    if len(lines) == 2:
        ax.text(0.98, 0.97, _gap_text(agg, lines["standard-DDP"], lines["distributed-index"]),
                transform=ax.transAxes, ha="right", va="top", fontsize=9, color="0.25")  # fmt: skip
    seconds_axis(ax)
    world_axis(ax, worlds)
    ax.set(xlabel=world_label(agg), ylabel=f"total time, prep + train ({unit})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, loc="lower left", fontsize=8)
    datasets = ", ".join(sorted(set(agg["dataset"])))
    suptitle(fig, title or f"Figure 7: total training time vs world size ({datasets})")
    return save_figure(fig, outdir(out_dir) / "figure7")
