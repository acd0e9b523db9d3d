"""Figure 7: total time vs world size, standard-DDP vs distributed-index, with the ideal line."""

from __future__ import annotations

import math
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
from bench.sweep.repeats import half95


def _pick(present: set[str], choices: Sequence[str]) -> str | None:
    return next((c for c in choices if c in present), None)


def speedup_at_largest(agg: pd.DataFrame, slow: str, fast: str) -> dict | None:
    """``fast``'s speedup over ``slow`` at the largest world both have: T_slow / T_fast with its
    95% interval (each mean's Student-t half-width over its repeats, propagated to first order),
    and the modes of the two points."""
    both = agg[agg["strategy"].isin([slow, fast])]
    worlds = both.groupby("world_size")["strategy"].nunique()
    if worlds.empty or worlds.max() < 2:
        return None
    p = int(worlds[worlds == 2].index.max())
    at = both[both["world_size"] == p].set_index("strategy")
    t, half, modes = {}, {}, {}
    for s in (slow, fast):
        r = at.loc[[s]].iloc[0]
        n = int(r["n_ok"])
        t[s] = float(r["total"])
        sd = 0.0 if pd.isna(r["total_sd"]) else float(r["total_sd"])
        half[s] = half95(sd, n)
        modes[s] = str(r["mode"])
    ratio = t[slow] / t[fast]
    rel = math.hypot(half[slow] / t[slow], half[fast] / t[fast])
    return {"world": p, "speedup": ratio, "ci95": ratio * rel, "modes": modes}


def _gap_text(agg: pd.DataFrame, slow: str, fast: str) -> str:
    """How many times faster ``fast`` is than ``slow`` at the largest world both have."""
    s = speedup_at_largest(agg, slow, fast)
    if s is None:
        return ""
    ci = "" if math.isnan(s["ci95"]) else f" ± {s['ci95']:.1f} (95%)"
    emulated = [k for k, m in s["modes"].items() if m == "emulated"]
    how = f"; emulated: {', '.join(emulated)}" if emulated else ""
    return f"at P = {s['world']}: {fast} {s['speedup']:.1f}×{ci} faster than {slow}{how}"


def figure7(df: pd.DataFrame, out_dir: str | Path, title: str = "") -> list[Path]:
    """Total time vs world size, standard-DDP vs distributed-index, with the ideal T(1)/P line,
    and ``figure7.md``: the speedup at the largest world with its 95% interval, and each point's mode.

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
    title = title or f"Figure 7: total training time vs world size ({datasets})"
    suptitle(fig, title)
    paths = save_figure(fig, outdir(out_dir) / "figure7")
    md = outdir(out_dir) / "figure7.md"
    md.write_text(_summary(agg, lines, title, unit))
    return [*paths, md]


def _summary(agg: pd.DataFrame, lines: dict[str, str], title: str, unit: str) -> str:
    """figure7.md: the speedup at the largest world with its interval, and every point's mode."""
    gap = (
        _gap_text(agg, lines["standard-DDP"], lines["distributed-index"]) if len(lines) == 2 else ""
    )
    rows = agg[agg["strategy"].isin(lines.values())].sort_values(["strategy", "world_size"])
    table = [
        f"| {r.strategy} | {int(r.world_size)} | {r.mode} | {int(r.n_ok)} | "
        f"{r.total:.3g}" + ("" if pd.isna(r.total_sd) or not r.total_sd else f" ± {r.total_sd:.2g}") + " |"
        for r in rows.itertuples()
    ]  # fmt: skip
    return "\n".join([
        f"# {title}", "", (gap + ".") if gap else "One strategy only: no speedup.", "",
        f"Total time = prep + train, mean ± std over the ok repeats ({unit}); emulated points have "
        "projected times (real ranks without a process group, the all-reduce modelled).", "",
        f"| strategy | P | mode | repeats | total ({unit}) |", "|---|---|---|---|---|", *table, "",
    ])  # fmt: skip
