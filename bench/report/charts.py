"""The figures of ``bench.plot``: scaling (time, speedup, efficiency), peak memory, epoch-time bars."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench.report.axes import (
    by_strategy,
    bytes_axis,
    draw_series,
    err_or_none,
    mode_handles,
    ratio_axis,
    seconds_axis,
    spans,
    strategy_handles,
    suptitle,
    world_axis,
    world_label,
)
from bench.report.summary import BASELINE

TIME_LABELS = {
    "total_s": "total time, prep + train",
    "train_s": "training time",
    "epoch_s_mean": "epoch time",
}


def scaling_figure(part: pd.DataFrame, title: str, styles: Mapping, time_col: str) -> Figure | None:
    """Time, speedup (own smallest world; vs standard) and efficiency vs world size, one dataset."""
    part = part[part[time_col].notna()]
    if part.empty:
        return None
    worlds = sorted(int(w) for w in part["world_size"].unique())
    has_vs = bool((part["strategy"] == BASELINE).any()) and bool(
        part.loc[part["strategy"] != BASELINE, "vs_standard"].notna().any()
    )
    if has_vs:
        fig = Figure(figsize=(11.5, 7.5), layout="constrained")
        (a_t, a_s), (a_v, a_e) = fig.subplots(2, 2)
    else:  # no empty panel: leave (c) out and say why
        fig = Figure(figsize=(15.0, 4.6), layout="constrained")
        (a_t, a_s, a_e), a_v = fig.subplots(1, 3), None
    for s, sub in by_strategy(part):
        st = styles[s]
        draw_series(a_t, sub, "world_size", time_col, st, bridge=True)
        b, bt = int(sub["base_world"].iloc[0]), float(sub["base_time"].iloc[0])
        xs = [w for w in worlds if w >= b]
        a_t.plot(xs, [bt * b / w for w in xs], linestyle=":", linewidth=1, color=st[0])
        draw_series(a_s, sub, "world_size", "speedup", st, bridge=True)
        if a_v is not None and s != BASELINE:
            draw_series(a_v, sub, "world_size", "vs_standard", st, bridge=True)
        draw_series(a_e, sub, "world_size", "efficiency", st, bridge=True)
    for b in sorted(part["base_world"].dropna().unique()):
        xs = [w for w in worlds if w >= b]
        a_s.plot(xs, [w / b for w in xs], linestyle=":", linewidth=1.2, color="black")
    seconds_axis(a_t)
    a_t.set(ylabel=f"{TIME_LABELS[time_col]} (s)", title="(a) time; dotted: ideal T(P₀)·P₀/P")
    ratio_axis(a_s)
    a_s.set(ylabel="speedup T(P₀)/T(P) (×)", title="(b) speedup vs the same strategy at P₀")
    if a_v is not None:
        a_v.axhline(1.0, color=styles[BASELINE][0], linestyle=":", linewidth=1.2)
        ratio_axis(a_v)
        a_v.set(ylabel=f"T({BASELINE}, P) / T(P) (×)",
                title=f"(c) speedup vs {BASELINE} at the same P")  # fmt: skip
    a_e.axhline(1.0, color="black", linestyle=":", linewidth=1.2)
    a_e.set_ylim(bottom=0)
    a_e.set(ylabel="efficiency = speedup/(P/P₀) (fraction)",
            title=f"({'d' if a_v is not None else 'c'}) parallel efficiency")  # fmt: skip
    for ax in (a_t, a_s, a_e, *([a_v] if a_v is not None else [])):
        world_axis(ax, worlds, world_label(part))
        ax.grid(True, which="major", alpha=0.3)
    handles = strategy_handles(part, styles) + mode_handles(part, "emulated (projected time)")
    handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1.2, label="ideal"))
    fig.legend(handles=handles, loc="outside right center")
    suptitle(fig, title)
    if a_v is None:
        fig.supxlabel(f"Speedup vs {BASELINE} at the same P is left out: no {BASELINE} rows "
                      "at these world sizes to compare with.", fontsize=9, color="0.3")  # fmt: skip
    return fig


def memory_figure(
    part: pd.DataFrame,
    title: str,
    styles: Mapping,
    y: str,
    ref: str,
    ylabel: str,
    ref_label: str = "analytic resident",
) -> Figure | None:
    """Peak memory ``y`` vs dataset raw size, log-log, one panel per world size; ``ref`` dotted."""
    part = part[part[y].notna() & (part[y] > 0) & part["raw_bytes"].notna()]
    if part.empty:
        return None
    worlds = sorted(int(w) for w in part["world_size"].unique())
    ncols = min(len(worlds), 3)
    nrows = math.ceil(len(worlds) / ncols)
    fig = Figure(figsize=(3.7 * ncols + 2.6, 3.1 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, w in zip(axes, worlds, strict=False):
        at_w = part[part["world_size"] == w]
        for s, sub in by_strategy(at_w):
            draw_series(ax, sub, "raw_bytes", y, styles[s], bridge=False)
            r = sub[sub[ref].notna()].groupby("raw_bytes")[ref].mean()  # what the rank holds
            ax.plot(
                r.index,
                r.to_numpy(),
                linestyle=":",
                linewidth=1,
                marker="_",
                markersize=10,
                color=styles[s][0],
            )
        ax.set_title(f"P = {w}" + (" (emulated)" if (at_w["mode"] == "emulated").all() else ""))
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[len(worlds) :]:
        ax.set_visible(False)
    bytes_axis(axes[0], "x", part["raw_bytes"].to_numpy(dtype=float))
    bytes_axis(axes[0], "y", np.concatenate([part[c].to_numpy(dtype=float) for c in (y, ref)]))
    fig.supxlabel("dataset raw size, T·N·F·4 bytes (fp32)")
    fig.supylabel(ylabel)
    handles = strategy_handles(part, styles) + mode_handles(part, "emulated world (real ranks)")
    handles.append(
        Line2D([], [], color="0.3", linestyle=":", marker="_", markersize=10, label=ref_label)
    )
    fig.legend(handles=handles, loc="outside right center")
    suptitle(fig, title)
    return fig


def _bar_slots(part: pd.DataFrame) -> list[tuple[str, str | None]]:
    """One bar slot per strategy (its mode shown by the fill), two where a world has both modes."""
    slots = []
    for s, sub in by_strategy(part):
        both = (sub.groupby("world_size")["mode"].nunique() > 1).any()
        slots += [(s, "measured"), (s, "emulated")] if both else [(s, None)]
    return slots


def bars_figure(part: pd.DataFrame, title: str, styles: Mapping) -> Figure | None:
    """Epoch time and throughput per world size, grouped bars per strategy (hatched: emulated)."""
    part = part[part["epoch_s_mean"].notna() | part["samples_per_s"].notna()]
    if part.empty:
        return None
    worlds = sorted(int(w) for w in part["world_size"].unique())
    slot = {w: i for i, w in enumerate(worlds)}
    slots = _bar_slots(part)
    width = 0.8 / len(slots)
    fig = Figure(
        figsize=(min(18.0, max(10.0, 2.5 + 0.25 * len(worlds) * len(slots))), 4.6),
        layout="constrained",
    )
    axes = fig.subplots(1, 2)
    spread = part["epoch_s_mean_sd"].fillna(0).gt(0).any()
    panels = (("epoch_s_mean", "epoch time (s)",
               "(a) epoch time, mean" + (" ± std (repeats, or epochs of one run)" if spread
                                         else " (1 run, 1 epoch: no spread)")),
              ("samples_per_s", "throughput, all ranks (samples/s)", "(b) training throughput"))  # fmt: skip
    for ax, (col, ylabel, name) in zip(axes, panels, strict=True):
        as_points = spans(part[col])  # bars only on a linear axis from zero
        for i, (s, m) in enumerate(slots):
            sub = part[
                (part["strategy"] == s) & ((part["mode"] == m) if m else True) & part[col].notna()
            ]
            sub = sub.groupby(["world_size", "mode"], as_index=False)[[col, f"{col}_sd"]].mean()
            color, marker = styles[s]
            for hollow, bars in sub.groupby(sub["mode"] == "emulated"):
                x = np.array([slot[int(w)] for w in bars["world_size"]]) - 0.4 + width * (i + 0.5)
                y, yerr = bars[col].to_numpy(dtype=float), err_or_none(bars[f"{col}_sd"])
                if as_points:
                    ax.errorbar(x, y, yerr=yerr, color=color, marker=marker, linestyle="none",
                                markerfacecolor="white" if hollow else color, capsize=2)  # fmt: skip
                else:
                    ax.bar(x, y, width, yerr=yerr, color="white" if hollow else color, edgecolor=color,
                           hatch="///" if hollow else None, linewidth=1,
                           error_kw=dict(elinewidth=1, capsize=2, ecolor="0.2"))  # fmt: skip
        ax.set_xticks(range(len(worlds)), [str(w) for w in worlds])
        ax.set(xlabel=world_label(part), ylabel=ylabel)
        ax.set_title(name, fontsize=10)
        if as_points and col == "epoch_s_mean":
            seconds_axis(ax)
        elif as_points:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", which="major", alpha=0.3)
    if any(spans(part[col]) for col, *_ in panels):  # points somewhere: marker legend
        fig.legend(handles=strategy_handles(part, styles) + mode_handles(part, "emulated (projected)"),
                   loc="outside right center")  # fmt: skip
        suptitle(fig, title)
        return fig
    handles = [
        Patch(facecolor=styles[s][0], edgecolor=styles[s][0], label=s) for s, _ in by_strategy(part)
    ]
    if (part["mode"] == "emulated").any():
        handles.append(
            Patch(facecolor="white", edgecolor="0.3", hatch="///", label="emulated (projected)")
        )
    fig.legend(handles=handles, loc="outside right center")
    suptitle(fig, title)
    return fig
