"""Shared plot styling: strategy colours and markers, series drawing, axes and legend helpers.

Used by the figure builders of ``bench.plot`` (:mod:`bench.report.charts`) and ``bench.figures``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, LogLocator, NullLocator

from bench.report.summary import STRATEGY_ORDER, strategy_rank
from bench.sweep.noise import NOISY_FRAC

FORMATS: tuple[str, ...] = ("png", "svg")
COLORS: dict[str, str] = {
    "standard": "#d62728",
    "standard-dask": "#ff7f0e",
    "index": "#1f77b4",
    "gpu-index": "#2ca02c",
    "partitioned": "#9467bd",
}
MARKERS: dict[str, str] = {
    "standard": "s",
    "standard-dask": "D",
    "index": "o",
    "gpu-index": "^",
    "partitioned": "v",
}
_SPARE = (("#8c564b", "P"), ("#e377c2", "X"), ("#7f7f7f", "*"), ("#bcbd22", "h"), ("#17becf", "<"))
WORLD_LABEL = "world size P (ranks)"
OVERSUBSCRIBED = "0.6"  # measured points whose ranks exceeded the host's cores


def strategy_styles(strategies: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Color and marker per strategy: fixed for the known ones, spare ones for others by name."""
    styles = {s: (COLORS[s], MARKERS[s]) for s in STRATEGY_ORDER}
    for i, s in enumerate(sorted(set(strategies) - set(styles))):
        styles[s] = _SPARE[i % len(_SPARE)]
    return styles


def by_strategy(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(strategy, its rows)`` in the fixed strategy order (legend and drawing order)."""
    for s in sorted(df["strategy"].unique(), key=strategy_rank):
        yield s, df[df["strategy"] == s]


def err_or_none(sd: pd.Series) -> np.ndarray | None:
    """Error-bar lengths from a std column (missing = 0), or ``None`` when all are 0."""
    e = sd.fillna(0.0).to_numpy(dtype=float)
    return e if e.any() else None


def draw_series(
    ax: Axes, sub: pd.DataFrame, x: str, y: str, style: tuple[str, str], bridge: bool
) -> None:
    """Measured points filled on a solid line, emulated hollow on a dashed one, ± the ``_sd`` column.

    With ``bridge``, the dashed line starts at the last measured point before the emulated ones.
    Measured points that oversubscribed the host are drawn apart (grey, no line: their times
    measure contention, not scaling); points with a noisy repeat get a black cross.
    """
    sub = sub[sub[y].notna()]
    color, marker = style
    kw = dict(color=color, marker=marker, markersize=6, linewidth=1.6, capsize=3, elinewidth=1)
    measured = sub[sub["mode"] != "emulated"].sort_values(x)
    emulated = sub[sub["mode"] == "emulated"].sort_values(x)
    sd = f"{y}_sd" if f"{y}_sd" in sub else None
    if "oversubscribed_any" in measured:
        apart = measured["oversubscribed_any"].fillna(False).astype(bool)
        over, measured = measured[apart], measured[~apart]
        if len(over):
            ax.errorbar(over[x], over[y], yerr=err_or_none(over[sd]) if sd else None,
                        **dict(kw, color=OVERSUBSCRIBED, linestyle="none"))  # fmt: skip
    if "n_noisy" in sub:
        noisy = sub[sub["n_noisy"].fillna(0) > 0]
        ax.plot(noisy[x], noisy[y], linestyle="none", marker="x", color="black", markersize=9)
    if len(measured):
        ax.errorbar(
            measured[x],
            measured[y],
            yerr=err_or_none(measured[sd]) if sd else None,
            linestyle="-",
            **kw,
        )
    if len(emulated):
        before = measured[measured[x] < emulated[x].min()].tail(1)
        if bridge and len(before):
            ax.plot([before[x].iloc[0], emulated[x].iloc[0]], [before[y].iloc[0], emulated[y].iloc[0]],
                    linestyle="--", color=color, linewidth=1.6)  # fmt: skip
        ax.errorbar(emulated[x], emulated[y], yerr=err_or_none(emulated[sd]) if sd else None, linestyle="--",
                    markerfacecolor="white", **kw)  # fmt: skip


def on_gpus(df: pd.DataFrame) -> bool:
    """Whether the rows ran on GPUs (their ``device`` names CUDA), so their ranks are GPUs."""
    return bool(df["device"].astype(str).str.startswith("cuda").any()) if "device" in df else False


def world_label(df: pd.DataFrame) -> str:
    """The world-size axis label: ``GPUs`` for rows on GPUs, ``CPU ranks`` (processes) otherwise."""
    return "world size P (GPUs)" if on_gpus(df) else "world size P (CPU ranks)"


def world_axis(ax: Axes, worlds: list[int], label: str = WORLD_LABEL) -> None:
    """Log2 x axis with one labelled tick per world size (1, 2, 4, ...)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(worlds))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(worlds) / 1.4, max(worlds) * 1.4)
    if len(worlds) > 8:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel(label)


def si_bytes(v: float, _pos: int | None = None) -> str:
    """Tick label of a byte count in SI units (``2 GB``); empty for non-positive values."""
    if v <= 0:
        return ""
    e = int(math.floor(math.log10(v) + 1e-9))
    unit = min(max(e // 3, 0), 5)
    return f"{v / 10 ** (3 * unit):g} {('B', 'kB', 'MB', 'GB', 'TB', 'PB')[unit]}"


def bytes_axis(ax: Axes, which: str, values: np.ndarray) -> None:
    """Log ``which`` ("x" or "y") axis in SI bytes with decade ticks, limits widened to decades."""
    axis, set_scale, set_lim = (
        (ax.xaxis, ax.set_xscale, ax.set_xlim)
        if which == "x"
        else (ax.yaxis, ax.set_yscale, ax.set_ylim)
    )
    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, numticks=6))
    axis.set_major_formatter(FuncFormatter(si_bytes))
    axis.set_minor_locator(NullLocator())
    v = values[np.isfinite(values) & (values > 0)]
    if len(v):
        set_lim(
            10 ** math.floor(math.log10(v.min() / 1.3)), 10 ** math.ceil(math.log10(v.max() * 1.3))
        )


class PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.5, 3, 20) on the ticks matplotlib chooses to label."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def seconds_axis(ax: Axes) -> None:
    """Log y axis of seconds, labelled 0.1, 1, 10 (and 2, 5 when it spans under a few decades)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def ratio_axis(ax: Axes) -> None:
    """Log2 y axis for ratios, labelled 0.25, 0.5, 1, 2, 4, ...; within 2 octaves also 1.25, 1.5,
    1.75 (x 2^k), so that a span such as 1.2-1.5 does not show the single label 1."""
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(v: float, _) -> str:
        lo, hi = ax.get_ylim()
        return f"{v:g}" if hi / lo < 4 else ""

    ax.yaxis.set_minor_locator(LogLocator(base=2, subs=(1.25, 1.5, 1.75)))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def spans(values: pd.Series, ratio: float = 20.0) -> bool:
    """Whether the positive values span more than ``ratio`` (max/min): worth a log axis."""
    v = values[values > 0].dropna()
    return bool(len(v)) and v.max() / v.min() > ratio


def mode_handles(df: pd.DataFrame, emulated: str) -> list[Line2D]:
    """Legend entries for measured (filled, solid) and, if any, emulated (hollow, dashed) points."""
    h = [Line2D([], [], color="0.3", marker="o", linestyle="-", label="measured")]
    if "oversubscribed_any" in df and df["oversubscribed_any"].fillna(False).astype(bool).any():
        h.append(Line2D([], [], color=OVERSUBSCRIBED, marker="o", linestyle="none",
                        label="oversubscribed (not scaling)"))  # fmt: skip
    if "n_noisy" in df and (df["n_noisy"].fillna(0) > 0).any():
        h.append(Line2D([], [], color="black", marker="x", linestyle="none",
                        label=f"noisy (foreign CPU > {NOISY_FRAC:.0%})"))  # fmt: skip
    if (df["mode"] == "emulated").any():
        h.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                markerfacecolor="white",
                linestyle="--",
                label=emulated,
            )
        )
    return h


def strategy_handles(df: pd.DataFrame, styles: Mapping[str, tuple[str, str]]) -> list[Line2D]:
    """One legend entry per strategy present in ``df``."""
    return [
        Line2D([], [], color=styles[s][0], marker=styles[s][1], linestyle="-", label=s)
        for s, _ in by_strategy(df)
    ]


def suptitle(fig: Figure, title: str) -> None:
    """The figure's title, wrapped to the figure's width so that no part of it is cut off."""
    fig.suptitle(textwrap.fill(title, max(40, int(fig.get_figwidth() * 10))))


def save_figure(fig: Figure | None, stem: Path) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.svg``; nothing (and ``[]``) when ``fig`` is ``None``."""
    if fig is None:
        return []
    paths = [stem.with_suffix(f".{ext}") for ext in FORMATS]
    for p in paths:
        fig.savefig(p, dpi=150)
    return paths
