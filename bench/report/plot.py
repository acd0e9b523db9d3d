"""``python -m bench.plot``: scaling, memory and epoch-time figures (PNG + SVG) and ``summary.md``.

    python -m bench.plot results/sweep.csv [more.csv ...] --out plots/

writes, per dataset and model, ``scaling_*`` (time, speedup vs the smallest world and vs
``standard``, parallel efficiency) and ``epoch_time_*`` (epoch time and throughput bars); per
model, ``memory_host_*`` and ``memory_device_*`` (peak vs dataset size, analytic bytes dotted).
The results CSV rows are the only input. Speedup and efficiency are derived from them
(:mod:`bench.report.summary`); rows whose status is not ``ok`` are left out of the figures, named on
stdout and listed in ``summary.md``. Emulated points (projected times) are drawn with hollow
markers and dashed lines, measured ones filled and solid; error bars are the std over repeats.
When no row is ``ok`` there is nothing to plot: ``summary.md`` is still written and the exit
status is 0 (a sweep where every point ran out of memory is a result, not a usage error).
Figures are rendered with matplotlib's Agg canvas (no pyplot, no display needed).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, LogLocator, NullLocator

from bench.report.memory_split import split_figure, split_markdown, split_table
from bench.report.summary import (
    BASELINE,
    FACETS,
    STRATEGY_ORDER,
    TIME_COLUMNS,
    aggregate,
    facet_title,
    left_out_lines,
    strategy_rank,
    summary_markdown,
    with_speedups,
)
from bench.sweep.results import read_results

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
# Peak memory hardly depends on batch size or epochs: one memory figure spans those.
MEMORY_FACETS: tuple[str, ...] = ("model", "lags", "horizon", "device")
TIME_LABELS = {
    "total_s": "total time, prep + train",
    "train_s": "training time",
    "epoch_s_mean": "epoch time",
}
WORLD_LABEL = "world size P (ranks)"


def strategy_styles(strategies: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Color and marker per strategy: fixed for the known ones, spare ones for others by name."""
    styles = {s: (COLORS[s], MARKERS[s]) for s in STRATEGY_ORDER}
    for i, s in enumerate(sorted(set(strategies) - set(styles))):
        styles[s] = _SPARE[i % len(_SPARE)]
    return styles


def _by_strategy(df: pd.DataFrame):
    for s in sorted(df["strategy"].unique(), key=strategy_rank):
        yield s, df[df["strategy"] == s]


def _err(sd: pd.Series) -> np.ndarray | None:
    e = sd.fillna(0.0).to_numpy(dtype=float)
    return e if e.any() else None


def draw_series(
    ax: Axes, sub: pd.DataFrame, x: str, y: str, style: tuple[str, str], bridge: bool
) -> None:
    """Measured points filled on a solid line, emulated hollow on a dashed one, ± the ``_sd`` column.

    With ``bridge``, the dashed line starts at the last measured point before the emulated ones.
    """
    sub = sub[sub[y].notna()]
    color, marker = style
    kw = dict(color=color, marker=marker, markersize=6, linewidth=1.6, capsize=3, elinewidth=1)
    measured = sub[sub["mode"] != "emulated"].sort_values(x)
    emulated = sub[sub["mode"] == "emulated"].sort_values(x)
    sd = f"{y}_sd" if f"{y}_sd" in sub else None
    if len(measured):
        ax.errorbar(
            measured[x], measured[y], yerr=_err(measured[sd]) if sd else None, linestyle="-", **kw
        )
    if len(emulated):
        before = measured[measured[x] < emulated[x].min()].tail(1)
        if bridge and len(before):
            ax.plot([before[x].iloc[0], emulated[x].iloc[0]], [before[y].iloc[0], emulated[y].iloc[0]],
                    linestyle="--", color=color, linewidth=1.6)  # fmt: skip
        ax.errorbar(emulated[x], emulated[y], yerr=_err(emulated[sd]) if sd else None, linestyle="--",
                    markerfacecolor="white", **kw)  # fmt: skip


def world_axis(ax: Axes, worlds: list[int]) -> None:
    """Log2 x axis with one labelled tick per world size (1, 2, 4, ...)."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(worlds))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(worlds) / 1.4, max(worlds) * 1.4)
    if len(worlds) > 8:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel(WORLD_LABEL)


def _si_bytes(v: float, _pos=None) -> str:
    if v <= 0:
        return ""
    e = int(math.floor(math.log10(v) + 1e-9))
    unit = min(max(e // 3, 0), 5)
    return f"{v / 10 ** (3 * unit):g} {('B', 'kB', 'MB', 'GB', 'TB', 'PB')[unit]}"


def _bytes_axis(ax: Axes, which: str, values: np.ndarray) -> None:
    """Log ``which`` ("x" or "y") axis in SI bytes with decade ticks, limits widened to decades."""
    axis, set_scale, set_lim = (
        (ax.xaxis, ax.set_xscale, ax.set_xlim)
        if which == "x"
        else (ax.yaxis, ax.set_yscale, ax.set_ylim)
    )
    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, numticks=6))
    axis.set_major_formatter(FuncFormatter(_si_bytes))
    axis.set_minor_locator(NullLocator())
    v = values[np.isfinite(values) & (values > 0)]
    if len(v):
        set_lim(
            10 ** math.floor(math.log10(v.min() / 1.3)), 10 ** math.ceil(math.log10(v.max() * 1.3))
        )


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.5, 3, 20) on the ticks matplotlib chooses to label."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def seconds_axis(ax: Axes) -> None:
    """Log y axis of seconds, labelled 0.1, 1, 10 (and 2, 5 when it spans under a few decades)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def _ratio_axis(ax: Axes) -> None:
    """Log2 y axis for ratios, labelled 0.25, 0.5, 1, 2, 4, ..."""
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def _spans(values: pd.Series, ratio: float = 20.0) -> bool:
    v = values[values > 0].dropna()
    return bool(len(v)) and v.max() / v.min() > ratio


def _mode_handles(df: pd.DataFrame, emulated: str) -> list[Line2D]:
    h = [Line2D([], [], color="0.3", marker="o", linestyle="-", label="measured")]
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


def _strategy_handles(df: pd.DataFrame, styles: Mapping[str, tuple[str, str]]) -> list[Line2D]:
    return [
        Line2D([], [], color=styles[s][0], marker=styles[s][1], linestyle="-", label=s)
        for s, _ in _by_strategy(df)
    ]


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def scaling_figure(part: pd.DataFrame, title: str, styles: Mapping, time_col: str) -> Figure | None:
    """Time, speedup (own smallest world; vs standard) and efficiency vs world size, one dataset."""
    part = part[part[time_col].notna()]
    if part.empty:
        return None
    worlds = sorted(int(w) for w in part["world_size"].unique())
    fig = Figure(figsize=(11.5, 7.5), layout="constrained")
    (a_t, a_s), (a_v, a_e) = fig.subplots(2, 2)
    for s, sub in _by_strategy(part):
        st = styles[s]
        draw_series(a_t, sub, "world_size", time_col, st, bridge=True)
        b, bt = int(sub["base_world"].iloc[0]), float(sub["base_time"].iloc[0])
        xs = [w for w in worlds if w >= b]
        a_t.plot(xs, [bt * b / w for w in xs], linestyle=":", linewidth=1, color=st[0])
        draw_series(a_s, sub, "world_size", "speedup", st, bridge=True)
        if s != BASELINE:
            draw_series(a_v, sub, "world_size", "vs_standard", st, bridge=True)
        draw_series(a_e, sub, "world_size", "efficiency", st, bridge=True)
    for b in sorted(part["base_world"].dropna().unique()):
        xs = [w for w in worlds if w >= b]
        a_s.plot(xs, [w / b for w in xs], linestyle=":", linewidth=1.2, color="black")
    seconds_axis(a_t)
    a_t.set(ylabel=f"{TIME_LABELS[time_col]} (s)", title="(a) time; dotted: ideal T(P₀)·P₀/P")
    _ratio_axis(a_s)
    a_s.set(ylabel="speedup T(P₀)/T(P) (×)", title="(b) speedup vs the same strategy at P₀")
    if (part["strategy"] == BASELINE).any() and part.loc[
        part["strategy"] != BASELINE, "vs_standard"
    ].notna().any():
        a_v.axhline(1.0, color=styles[BASELINE][0], linestyle=":", linewidth=1.2)
        _ratio_axis(a_v)
        a_v.set(
            ylabel=f"T_{BASELINE}(P)/T(P) (×)", title=f"(c) speedup vs {BASELINE} at the same P"
        )
    else:
        _no_data(a_v, f"no {BASELINE} rows at the same world sizes to compare with")
        a_v.set_title(f"(c) speedup vs {BASELINE} at the same P")
    a_e.axhline(1.0, color="black", linestyle=":", linewidth=1.2)
    a_e.set_ylim(bottom=0)
    a_e.set(ylabel="efficiency = speedup/(P/P₀)", title="(d) parallel efficiency")
    for ax in (a_t, a_s, a_e) + ((a_v,) if a_v.has_data() else ()):
        world_axis(ax, worlds)
        ax.grid(True, which="major", alpha=0.3)
    handles = _strategy_handles(part, styles) + _mode_handles(part, "emulated (projected time)")
    handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1.2, label="ideal"))
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(title)
    return fig


def memory_figure(
    part: pd.DataFrame, title: str, styles: Mapping, y: str, ref: str, ylabel: str
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
        for s, sub in _by_strategy(at_w):
            draw_series(ax, sub, "raw_bytes", y, styles[s], bridge=False)
            r = sub[sub[ref].notna()].groupby("raw_bytes")[ref].mean()
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
    _bytes_axis(axes[0], "x", part["raw_bytes"].to_numpy(dtype=float))
    _bytes_axis(axes[0], "y", np.concatenate([part[c].to_numpy(dtype=float) for c in (y, ref)]))
    fig.supxlabel("dataset raw size, T·N·F·4 bytes (fp32)")
    fig.supylabel(ylabel)
    handles = _strategy_handles(part, styles) + _mode_handles(part, "emulated world (real ranks)")
    handles.append(
        Line2D(
            [], [], color="0.3", linestyle=":", marker="_", markersize=10, label="analytic resident"
        )
    )
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(title)
    return fig


def _bar_slots(part: pd.DataFrame) -> list[tuple[str, str | None]]:
    """One bar slot per strategy (its mode shown by the fill), two where a world has both modes."""
    slots = []
    for s, sub in _by_strategy(part):
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
    panels = (("epoch_s_mean", "epoch time (s)", "(a) epoch time, mean ± std"),
              ("samples_per_s", "throughput, all ranks (samples/s)", "(b) training throughput"))  # fmt: skip
    for ax, (col, ylabel, name) in zip(axes, panels, strict=True):
        for i, (s, m) in enumerate(slots):
            sub = part[
                (part["strategy"] == s) & ((part["mode"] == m) if m else True) & part[col].notna()
            ]
            sub = sub.groupby(["world_size", "mode"], as_index=False)[[col, f"{col}_sd"]].mean()
            color = styles[s][0]
            for hollow, bars in sub.groupby(sub["mode"] == "emulated"):
                x = np.array([slot[int(w)] for w in bars["world_size"]]) - 0.4 + width * (i + 0.5)
                ax.bar(x, bars[col].to_numpy(dtype=float), width, yerr=_err(bars[f"{col}_sd"]),
                       color="white" if hollow else color, edgecolor=color, hatch="///" if hollow else None,
                       linewidth=1, error_kw=dict(elinewidth=1, capsize=2, ecolor="0.2"))  # fmt: skip
        ax.set_xticks(range(len(worlds)), [str(w) for w in worlds])
        ax.set(xlabel=WORLD_LABEL, ylabel=ylabel, title=name)
        if _spans(part[col]) and col == "epoch_s_mean":
            seconds_axis(ax)
        elif _spans(part[col]):
            ax.set_yscale("log")
        ax.grid(True, axis="y", which="major", alpha=0.3)
    handles = [
        Patch(facecolor=styles[s][0], edgecolor=styles[s][0], label=s)
        for s, _ in _by_strategy(part)
    ]
    if (part["mode"] == "emulated").any():
        handles.append(
            Patch(facecolor="white", edgecolor="0.3", hatch="///", label="emulated (projected)")
        )
    fig.legend(handles=handles, loc="outside right center")
    fig.suptitle(title)
    return fig


def _slugs(keys: list[tuple], facets: tuple[str, ...], always: tuple[str, ...]) -> list[str]:
    """File-name parts for facet combinations: the ``always`` facets plus the ones that vary."""
    varying = [i for i, f in enumerate(facets) if f in always or len({k[i] for k in keys}) > 1]
    out = []
    for k in keys:
        parts = [re.sub(r"[^A-Za-z0-9.]+", "-", str(k[i])).strip("-")[:60] for i in varying]
        slug = "_".join(p for p in parts if p) or "all"
        out.append(slug if slug not in out else f"{slug}_{len(out)}")
    return out


def save_figure(fig: Figure | None, stem: Path) -> list[Path]:
    if fig is None:
        return []
    paths = [stem.with_suffix(f".{ext}") for ext in FORMATS]
    for p in paths:
        fig.savefig(p, dpi=150)
    return paths


def _groups(agg: pd.DataFrame, facets: tuple[str, ...], always: tuple[str, ...]):
    groups = list(agg.groupby(list(facets), dropna=False, sort=False))
    slugs = _slugs([k for k, _ in groups], facets, always)
    for (key, part), slug in zip(groups, slugs, strict=True):
        yield facet_title(dict(zip(facets, key, strict=True))), slug, part


def make_plots(df: pd.DataFrame, out_dir: str | Path, time_col: str = "total_s") -> list[Path]:
    """Write every figure (PNG and SVG) and ``summary.md`` to ``out_dir``; return their paths.

    Args:
        df (pandas.DataFrame): rows as from :func:`bench.sweep.results.read_results` (any status).
        out_dir (str | Path): created if missing.
        time_col (str, default ``"total_s"``): the time speedup and efficiency are computed from.
    """
    if time_col not in TIME_COLUMNS:
        raise ValueError(f"time_col: {time_col!r} is not one of {', '.join(TIME_COLUMNS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    if (df["status"] == "ok").any():
        agg = with_speedups(aggregate(df), time_col)
        agg = agg[agg["n_ok"] > 0]
        styles = strategy_styles(agg["strategy"])
        for title, slug, part in _groups(agg, FACETS, always=("dataset", "model")):
            figures += save_figure(
                scaling_figure(part, title, styles, time_col), out_dir / f"scaling_{slug}"
            )
            figures += save_figure(bars_figure(part, title, styles), out_dir / f"epoch_time_{slug}")
        for title, slug, part in _groups(agg, MEMORY_FACETS, always=("model",)):
            figures += save_figure(
                memory_figure(part, f"{title} · peak host memory", styles, "host_peak_pss_max_rank",
                              "analytic_host_bytes", "peak host PSS, max over ranks (bytes)"),
                out_dir / f"memory_host_{slug}",
            )  # fmt: skip
            figures += save_figure(
                memory_figure(part, f"{title} · peak device memory", styles, "device_peak_allocated",
                              "analytic_device_bytes", "peak device allocated, max over ranks (bytes)"),
                out_dir / f"memory_device_{slug}",
            )  # fmt: skip
        figures += save_figure(split_figure(split_table(df)), out_dir / "memory_split")
    summary = out_dir / "summary.md"
    summary.write_text(summary_markdown(df, figures, time_col) + split_markdown(df))
    return [*figures, summary]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.plot",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("csv", nargs="+", type=Path, help="results CSV file(s) written by bench.run")
    p.add_argument(
        "--out", type=Path, default=Path("plots"), help="directory for the figures and summary.md"
    )
    p.add_argument(
        "--time",
        choices=TIME_COLUMNS,
        default="total_s",
        help="time that speedup and efficiency compare",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for path in args.csv:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    try:
        df = read_results(args.csv)
    except ValueError as exc:
        parser.error(str(exc).splitlines()[0])
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {args.out} is not a directory")
    for line in left_out_lines(df):
        print(line)
    try:
        written = make_plots(df, args.out, args.time)
    except OSError as exc:
        parser.error(f"--out: cannot write to {args.out}: {exc.strerror}")
    if len(written) == 1:
        n_ok = int((df["status"] == "ok").sum())
        why = (
            f"{n_ok} ok row(s) carry no times or memory values" if n_ok else "no row with status ok"
        )
        print(f"nothing to plot: {why} in {len(df)} row(s); wrote {written[0]}")
    else:
        print(f"wrote {len(written) - 1} figure files and {written[-1]} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
