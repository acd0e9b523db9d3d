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
import re
import sys
from pathlib import Path

import pandas as pd

from bench.report.axes import save_figure, strategy_styles
from bench.report.charts import bars_figure, memory_figure, scaling_figure
from bench.report.memory_split import split_figure, split_markdown, split_table
from bench.report.summary import (
    FACETS,
    TIME_COLUMNS,
    aggregate,
    dataset_title,
    facet_title,
    left_out_lines,
    summary_markdown,
    with_speedups,
)
from bench.sweep.results import read_results

# Peak memory hardly depends on batch size or epochs: one memory figure spans those.
MEMORY_FACETS: tuple[str, ...] = ("model", "lags", "horizon", "device")


def _slugs(keys: list[tuple], facets: tuple[str, ...], always: tuple[str, ...]) -> list[str]:
    """File-name parts for facet combinations: the ``always`` facets plus the ones that vary."""
    varying = [i for i, f in enumerate(facets) if f in always or len({k[i] for k in keys}) > 1]
    out = []
    for k in keys:
        parts = [re.sub(r"[^A-Za-z0-9.]+", "-", str(k[i])).strip("-")[:60] for i in varying]
        slug = "_".join(p for p in parts if p) or "all"
        out.append(slug if slug not in out else f"{slug}_{len(out)}")
    return out


def _groups(agg: pd.DataFrame, facets: tuple[str, ...], always: tuple[str, ...]):
    groups = list(agg.groupby(list(facets), dropna=False, sort=False))
    slugs = _slugs([k for k, _ in groups], facets, always)
    for (key, part), slug in zip(groups, slugs, strict=True):
        size = {c: part[c].iloc[0] for c in ("nodes", "steps") if "dataset" in facets and c in part}
        yield facet_title({**dict(zip(facets, key, strict=True)), **size}), slug, part


def data_of(part: pd.DataFrame) -> str:
    """The datasets a figure spans, named as synthetic or real (``synthetic metr-la profile``)."""
    return ", ".join(dataset_title(str(d)) for d in part["dataset"].unique())


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
        # standard-dask's Dask workers hold its windows outside the rank: count them with it;
        # the reference is what the strategy holds plus the idle rank it runs in.
        agg = agg.assign(
            host_peak_with_cluster=agg["host_peak_pss_max_rank"] + agg["cluster_memory_bytes"].fillna(0),
            host_reference=agg["analytic_host_bytes"] + agg["host_baseline_pss"].fillna(0),
        )  # fmt: skip
        dask = (agg["cluster_memory_bytes"].fillna(0) > 0).any()
        for title, slug, part in _groups(agg, MEMORY_FACETS, always=("model",)):
            figures += save_figure(
                memory_figure(part, f"{title} · {data_of(part)} · peak host memory", styles,
                              "host_peak_with_cluster",
                              "host_reference",
                              "peak host PSS, max over ranks (bytes)"
                              + ("\n+ the Dask workers' for standard-dask" if dask else ""),
                              "analytic resident + idle rank baseline"),
                out_dir / f"memory_host_{slug}",
            )  # fmt: skip
            figures += save_figure(
                memory_figure(part, f"{title} · {data_of(part)} · peak device memory", styles,
                              "device_peak_allocated",
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
