"""``python -m bench.figures``: the PGT-I paper's figures and tables, at this machine's scale.

    python -m bench.figures --scale small --out plots/paper --results results/paper

runs what each artefact needs, then renders it from the recorded data only:

* Figure 5 (``figure5.png``): validation MAE per epoch, standard vs index, for PeMS-Bay-shaped,
  Chickenpox and Windmill data (``python -m pgti_core.train`` runs; their metrics JSON under
  ``figure5/``);
* Table 3 (``table3.md``): runtime, peak host memory and best validation MAE, mean ± std over
  repeats, standard vs index, on the same three datasets (a ``bench.run`` sweep at world size 1;
  larger series with capped training steps at the small scale, so that memory differences show);
* Table 4 (``table4.md``): index vs gpu-index on PeMS-shaped data: runtime, host and device peak
  (gpu-index runs on the CPU when no GPU is present, and the table says so);
* Figure 7 (``figure7.png``): total time vs world size, standard-DDP vs distributed-index, with the
  single-rank/P ideal line; worlds beyond this host are emulated and drawn hollow and dashed.

Everything is resumable: finished sweep points are kept in the CSVs (``bench.run`` resume) and
finished Figure 5 runs in their JSON files, so a re-run only does what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.cli import ArgumentParser, check_output_dir, names
from bench.report.plot import draw_series, save_figure, seconds_axis, strategy_styles, world_axis
from bench.report.summary import aggregate, fmt_bytes, fmt_num, left_out_lines, md_table, plus_minus
from bench.sweep.driver import gpus_here
from bench.sweep.driver import main as run_sweep
from bench.sweep.results import read_results
from pgti_core.data.datasets import parse_dataset_spec

MODEL = "dcrnn-paper"
QUALITY = ("pems-bay", "chickenpox", "windmill")
"""The datasets of Figure 5 and Table 3, as the paper names them (PeMS-Bay, Chickenpox, Windmill)."""
PAPER_NAMES = {
    "pems-bay": "PeMS-Bay",
    "chickenpox": "Chickenpox",
    "windmill": "Windmill",
    "pems": "PeMS",
}
STAGES = ("figure5", "table3", "table4", "figure7")
TITLES = {
    "figure5": "Figure 5: validation MAE per epoch, standard vs index",
    "table3": "Table 3: runtime, peak host memory, best val MAE",
    "table4": "Table 4: index vs gpu-index",
    "figure7": "Figure 7: total time vs world size",
}
STANDARD_DDP = ("standard-dask", "standard")
DISTRIBUTED_INDEX = ("gpu-index", "index")
"""Figure 7's two lines, each the first strategy of its tuple that has rows."""


@dataclass(frozen=True)
class Scale:
    """How big one ``--scale`` makes the runs.

    Args:
        name: ``small``, ``medium`` or ``full``.
        figure5: dataset spec per entry of :data:`QUALITY` for Figure 5 (whole epochs).
        figure5_epochs: epochs of the Figure 5 runs.
        table3: dataset spec per entry of :data:`QUALITY` for Table 3 (larger: memory is the point).
        table3_epochs: epochs of each Table 3 point.
        table3_max_steps: cap on training steps per epoch in Table 3 (``None``: whole epochs).
        repeats: repeats of each Table 3 and Table 4 point.
        pems: dataset spec of Table 4 and Figure 7 (the paper's PeMS).
        table4_epochs: epochs of each Table 4 point.
        figure7_epochs: epochs of each Figure 7 point.
        figure7_worlds: world sizes of Figure 7.
    """

    name: str
    figure5: Mapping[str, str]
    figure5_epochs: int
    table3: Mapping[str, str]
    table3_epochs: int
    table3_max_steps: int | None
    repeats: int
    pems: str
    table4_epochs: int
    figure7_epochs: int
    figure7_worlds: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)

    def specs(self) -> dict[str, str]:
        """Every dataset spec of the scale -> the paper's name of its dataset."""
        pairs = [
            *((v, k) for k, v in self.figure5.items()),
            *((v, k) for k, v in self.table3.items()),
        ]
        return {spec: PAPER_NAMES[key] for spec, key in [*pairs, (self.pems, "pems")]}


SCALES: dict[str, Scale] = {
    "small": Scale(
        "small",
        figure5={"pems-bay": "pems-bay:steps=3000", "chickenpox": "chickenpox", "windmill": "windmill:nodes=100,steps=3000"},
        figure5_epochs=8,
        table3={"pems-bay": "pems-bay:steps=12000", "chickenpox": "chickenpox", "windmill": "windmill"},
        table3_epochs=2, table3_max_steps=20, repeats=3,
        pems="pems:nodes=1000,steps=8000", table4_epochs=1, figure7_epochs=1,
    ),
    "medium": Scale(
        "medium",
        figure5={"pems-bay": "pems-bay:steps=12000", "chickenpox": "chickenpox", "windmill": "windmill:steps=8000"},
        figure5_epochs=20,
        table3={"pems-bay": "pems-bay", "chickenpox": "chickenpox", "windmill": "windmill"},
        table3_epochs=3, table3_max_steps=100, repeats=3,
        pems="pems:nodes=2000,steps=12000", table4_epochs=2, figure7_epochs=2,
    ),
    "full": Scale(
        "full",
        figure5={"pems-bay": "pems-bay", "chickenpox": "chickenpox", "windmill": "windmill"},
        figure5_epochs=100,
        table3={"pems-bay": "pems-bay", "chickenpox": "chickenpox", "windmill": "windmill"},
        table3_epochs=100, table3_max_steps=None, repeats=3,
        pems="pems", table4_epochs=30, figure7_epochs=30,
    ),
}  # fmt: skip
"""``full`` is the paper's setting (100 epochs for PeMS-Bay and Windmill, 30 for PeMS): a cluster's
job. ``small`` runs here in about 10 minutes; Table 3 caps its training steps so that its datasets
can be large enough for the memory difference to show."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _label(spec: str) -> str:
    return parse_dataset_spec(spec).label


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def _outdir(path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _left_out_note(df: pd.DataFrame) -> list[str]:
    lines = left_out_lines(df)
    return (
        ["", "Left out (status other than ok):", "", *(f"- {ln}" for ln in lines)] if lines else []
    )


# ----- Figure 5 -----------------------------------------------------------------------------------


def figure5_path(runs_dir: Path, spec: str, strategy: str, epochs: int, seed: int = 0) -> Path:
    """Where the metrics JSON of one Figure 5 run is kept."""
    return Path(runs_dir) / f"{_slug(spec)}.{strategy}.e{epochs}.s{seed}.json"


def figure5_run(spec: str, strategy: str, epochs: int, runs_dir: Path, seed: int = 0) -> dict:
    """One Figure 5 run's metrics (``RunOutcome.summary()``), reused from ``runs_dir`` when present.

    The run is ``python -m pgti_core.train --metrics-out ...`` in a fresh process, as users train.
    """
    path = figure5_path(runs_dir, spec, strategy, epochs, seed)
    if not path.is_file():
        cmd = [sys.executable, "-m", "pgti_core.train", "--dataset", spec, "--strategy", strategy,
               "--model", MODEL, "--epochs", str(epochs), "--seed", str(seed),
               "--metrics-out", str(path), "--quiet"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd[1:])} exited with {proc.returncode}: {proc.stderr[-1500:]}"
            )
    return json.loads(path.read_text())


def val_curves(summaries: Sequence[dict]) -> dict[str, dict[str, list[float]]]:
    """``{dataset: {strategy: [val MAE after epoch 1, 2, ...]}}`` from run summaries."""
    curves: dict[str, dict[str, list[float]]] = {}
    for s in summaries:
        cfg = s["config"]
        curves.setdefault(cfg["dataset"], {})[cfg["strategy"]] = [
            e["val"]["mae"] for e in s["epochs"]
        ]
    return curves


def figure5(
    summaries: Sequence[dict], out_dir: str | Path, names: Mapping[str, str] | None = None
) -> list[Path]:
    """Validation MAE per epoch, one panel per dataset: standard solid, index dashed with markers.

    Args:
        summaries: run summaries (``RunOutcome.summary()``), any datasets and strategies.
        out_dir: where ``figure5.png``/``.svg`` go.
        names: display name per dataset spec (default: the spec).
    """
    curves = val_curves(summaries)
    if not curves:
        raise ValueError("summaries: no runs to plot")
    names = names or {}
    styles = strategy_styles(s for c in curves.values() for s in c)
    fig = Figure(figsize=(4.2 * len(curves), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(curves)))
    for ax, (dataset, by_strategy) in zip(axes, curves.items(), strict=True):
        for strategy in sorted(by_strategy, key=lambda s: s != "standard"):
            mae = by_strategy[strategy]
            x = np.arange(1, len(mae) + 1)
            color, marker = styles[strategy]
            if strategy == "standard":
                ax.plot(x, mae, color=color, linewidth=4, alpha=0.45, label=strategy)
            else:
                ax.plot(
                    x,
                    mae,
                    color=color,
                    linestyle="--",
                    marker=marker,
                    markersize=5,
                    markerfacecolor="white",
                    linewidth=1.4,
                    label=strategy,
                )
        if {"standard", "index"} <= by_strategy.keys():
            a, b = np.asarray(by_strategy["standard"]), np.asarray(by_strategy["index"])
            n = min(len(a), len(b))
            gap = float(np.max(np.abs(a[:n] - b[:n]))) if n else float("nan")
            ax.text(
                0.97,
                0.97,
                f"max |standard − index| = {gap:.2g}",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                color="0.3",
            )
        ax.set_title(names.get(dataset, dataset), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("validation MAE (masked, de-normalized)")
    axes[0].legend(loc="center right")
    fig.suptitle(f"Figure 5: validation MAE per epoch ({MODEL}); the curves coincide")
    return save_figure(fig, _outdir(out_dir) / "figure5")


# ----- Tables -------------------------------------------------------------------------------------


def over_repeats(df: pd.DataFrame, keys: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (``<col>_sd``) and count (``runs``) of ``columns`` over the ok rows per ``keys``."""
    ok = _ok(df)
    data = ok[list(keys)].copy()
    for c in columns:
        data[c] = pd.to_numeric(ok[c], errors="coerce").astype("float64")
    g = data.groupby(list(keys), sort=False)
    return (
        g[list(columns)]
        .mean()
        .join(g[list(columns)].std(ddof=1).add_suffix("_sd"))
        .join(g.size().rename("runs"))
        .reset_index()
    )


def _bytes_pm(m: float, s: float) -> str:
    return plus_minus(m, s, fmt_bytes)


def table3(
    df: pd.DataFrame, out_dir: str | Path, names: Mapping[str, str] | None = None, setting: str = ""
) -> list[Path]:
    """Table 3 as ``table3.md`` and ``table3.csv``: per dataset, standard vs index.

    Args:
        df: results rows (any status) of world size 1, as from :func:`bench.sweep.results.read_results`.
        out_dir: output directory.
        names: display name per dataset label (default: the label).
        setting: one line on how the rows were produced (scale, epochs), shown under the title.
    """
    names = names or {}
    cols = ["total_s", "host_peak_pss_max_rank", "host_baseline_pss", "best_val_mae"]
    df = df.assign(host_added=df["host_peak_pss_max_rank"] - df["host_baseline_pss"])
    agg = over_repeats(df[df["world_size"] == 1], ["dataset", "strategy"], [*cols, "host_added"])
    rows, notes = [], []
    for dataset, part in agg.groupby("dataset", sort=False):
        for r in part.itertuples():
            rows.append(
                [
                    names.get(dataset, dataset),
                    r.strategy,
                    str(r.runs),
                    plus_minus(r.total_s, r.total_s_sd),
                    _bytes_pm(r.host_peak_pss_max_rank, r.host_peak_pss_max_rank_sd),
                    _bytes_pm(r.host_added, r.host_added_sd),
                    plus_minus(r.best_val_mae, r.best_val_mae_sd),
                ]
            )
        by = part.set_index("strategy")
        if {"standard", "index"} <= set(by.index):
            s, i = by.loc["standard"], by.loc["index"]
            notes.append(
                f"- {names.get(dataset, dataset)}: index cuts the peak by "
                f"{100 * (1 - i.host_peak_pss_max_rank / s.host_peak_pss_max_rank):.1f}% "
                f"({100 * (1 - i.host_added / s.host_added):.1f}% of what the run adds to the idle "
                f"process); runtime index/standard {i.total_s / s.total_s:.2f}; best val MAE "
                f"{fmt_num(i.best_val_mae)} vs {fmt_num(s.best_val_mae)}"
            )
    lines = [
        "# Table 3: standard vs index batching (world size 1)",
        "",
        f"{setting} Mean ± std over repeats. Runtime = data preparation + training (incl. validation); peak host "
        "= peak PSS of the rank's process tree (sampled every 50 ms); added = peak minus the PSS "
        "before the data was built.",
        "",
        *md_table(["dataset", "strategy", "runs", "runtime (s)", "peak host", "added by the run",
                    "best val MAE"], rows),
        "",
        *notes,
        *_left_out_note(df),
    ]  # fmt: skip
    out_dir = _outdir(out_dir)
    (out_dir / "table3.md").write_text("\n".join(lines) + "\n")
    agg.insert(0, "name", agg["dataset"].map(lambda d: names.get(d, d)))
    agg.to_csv(out_dir / "table3.csv", index=False)
    return [out_dir / "table3.md", out_dir / "table3.csv"]


def gpu_present(df: pd.DataFrame) -> bool:
    """Whether any ok row ran on a GPU (its device memory was measured)."""
    ok = _ok(df)
    return bool(ok["device_peak_allocated"].notna().any() or ok["device_peak_nvml"].notna().any())


def table4(
    df: pd.DataFrame, out_dir: str | Path, names: Mapping[str, str] | None = None, setting: str = ""
) -> list[Path]:
    """Table 4 as ``table4.md`` and ``table4.csv``: index vs gpu-index at world size 1.

    Args:
        df: results rows (any status), as from :func:`bench.sweep.results.read_results`.
        out_dir: output directory.
        names: display name per dataset label (default: the label).
        setting: one line on how the rows were produced (scale, epochs), shown under the title.
    """
    names = names or {}
    cols = ["total_s", "host_peak_pss_max_rank", "device_peak_allocated", "device_peak_nvml"]
    agg = over_repeats(df[df["world_size"] == 1], ["dataset", "strategy", "device"], cols)
    on_gpu = gpu_present(df)
    rows = [
        [names.get(r.dataset, r.dataset), r.strategy, r.device, str(r.runs), plus_minus(r.total_s, r.total_s_sd),
         _bytes_pm(r.host_peak_pss_max_rank, r.host_peak_pss_max_rank_sd),
         _bytes_pm(r.device_peak_allocated, r.device_peak_allocated_sd) or "n/a",
         _bytes_pm(r.device_peak_nvml, r.device_peak_nvml_sd) or "n/a"]
        for r in agg.itertuples()
    ]  # fmt: skip
    where = (
        "gpu-index kept the series on the GPU."
        if on_gpu
        else "**No GPU was present: gpu-index ran with its series on the CPU (device = cpu), so it "
        "measures the same gathers as index and there is no device memory to report.**"
    )
    lines = [
        "# Table 4: index vs gpu-index (world size 1)",
        "",
        f"{setting} Mean ± std over repeats. {where} Device peak = `torch.cuda.max_memory_allocated` and NVML "
        "used memory of the rank's GPU, above the baseline before the data was built.",
        "",
        *md_table(["dataset", "strategy", "device", "runs", "runtime (s)", "peak host",
                    "peak device (allocated)", "peak device (NVML)"], rows),
        *_left_out_note(df),
    ]  # fmt: skip
    out_dir = _outdir(out_dir)
    (out_dir / "table4.md").write_text("\n".join(lines) + "\n")
    agg.assign(gpu_present=on_gpu).to_csv(out_dir / "table4.csv", index=False)
    return [out_dir / "table4.md", out_dir / "table4.csv"]


# ----- Figure 7 -----------------------------------------------------------------------------------


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
    ax.set(xlabel="GPUs (ranks) P", ylabel=f"total time, prep + train ({unit})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, loc="lower left", fontsize=8)
    datasets = ", ".join(sorted(set(agg["dataset"])))
    fig.suptitle(title or f"Figure 7: total training time vs GPUs ({datasets})")
    return save_figure(fig, _outdir(out_dir) / "figure7")


# ----- Stages and the command line ----------------------------------------------------------------


def sweep(csv: Path, argv: Sequence[str]) -> pd.DataFrame:
    """Run (or resume) ``python -m bench.run ARGV --out CSV`` and return all rows of ``csv``."""
    argv = [*argv, "--models", MODEL, "--out", str(csv)]
    rc = run_sweep(argv)
    if rc != 0:
        raise RuntimeError(f"bench.run {' '.join(argv)} exited with {rc}")
    return read_results(csv)


@dataclass
class Context:
    """What every stage needs: the scale, where data and artefacts go, and whether to run.

    Args:
        scale: the run sizes.
        results: directory of this scale's CSVs and run JSONs.
        out: directory of the artefacts.
        run: run what is missing (False: render what is there).
        quiet: no progress lines below the stage lines.
        baseline: the standard-DDP strategy Figure 7 sweeps (``standard`` or ``standard-dask``).
    """

    scale: Scale
    results: Path
    out: Path
    run: bool = True
    quiet: bool = False
    baseline: str = "standard"

    def names(self) -> dict[str, str]:
        """Display name per dataset label: ``PeMS-Bay (pems-bay:steps=3000)``."""
        return {
            _label(spec): f"{name} ({_label(spec)})" for spec, name in self.scale.specs().items()
        }

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def rows(
        self,
        name: str,
        datasets: Sequence[str],
        strategies: Sequence[str],
        worlds: Sequence[int],
        epochs: int,
        extra: Sequence[str] = (),
    ) -> pd.DataFrame:
        """This stage's rows of ``<results>/<name>.csv``, after running the missing points."""
        csv = self.results / f"{name}.csv"
        argv = ["--gpus", ",".join(map(str, worlds)), "--datasets", ";".join(datasets),
                "--strategies", ",".join(strategies), "--epochs", str(epochs), *extra,
                *(["--quiet"] if self.quiet else [])]  # fmt: skip
        if self.run:
            df = sweep(csv, argv)
        elif csv.is_file():
            df = read_results(csv)
        else:
            raise FileNotFoundError(f"{csv}: no results yet; run without --no-run")
        labels = [_label(d) for d in datasets]
        keep = (
            df["dataset"].isin(labels) & df["strategy"].isin(strategies) & (df["epochs"] == epochs)
        )
        return df[keep.fillna(False).astype(bool)]


def stage_figure5(ctx: Context) -> list[Path]:
    runs_dir, epochs = ctx.results / "figure5", ctx.scale.figure5_epochs
    summaries = []
    for key in QUALITY:
        spec = ctx.scale.figure5[key]
        for strategy in ("standard", "index"):
            path = figure5_path(runs_dir, spec, strategy, epochs)
            if not (ctx.run or path.is_file()):
                raise FileNotFoundError(f"{path}: no such run yet; run without --no-run")
            t0 = time.perf_counter()
            summaries.append(figure5_run(spec, strategy, epochs, runs_dir))
            best = min(e["val"]["mae"] for e in summaries[-1]["epochs"])
            ctx.say(f"  {spec} {strategy}, {epochs} epochs: best val MAE {best:.4f} "
                    f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return figure5(summaries, ctx.out, ctx.names())


def stage_table3(ctx: Context) -> list[Path]:
    sc = ctx.scale
    cap = ["--max-steps", str(sc.table3_max_steps)] if sc.table3_max_steps else []
    df = ctx.rows("table3", [sc.table3[k] for k in QUALITY], ["standard", "index"], [1],
                  sc.table3_epochs, ["--repeats", str(sc.repeats), *cap])  # fmt: skip
    steps = f", at most {sc.table3_max_steps} training steps each" if cap else ""
    setting = f"{sc.name} scale: {MODEL}, {_epochs(sc.table3_epochs)}{steps}, {sc.repeats} repeats."
    return table3(df, ctx.out, ctx.names(), setting)


def stage_table4(ctx: Context) -> list[Path]:
    sc = ctx.scale
    df = ctx.rows("table4", [sc.pems], ["index", "gpu-index"], [1], sc.table4_epochs,
                  ["--repeats", str(sc.repeats)])  # fmt: skip
    setting = f"{sc.name} scale: {MODEL}, {_epochs(sc.table4_epochs)}, {sc.repeats} repeats."
    return table4(df, ctx.out, ctx.names(), setting)


def stage_figure7(ctx: Context) -> list[Path]:
    gpus = gpus_here()
    # Without GPUs, CPU ranks beyond the cores only time-share them: emulate instead.
    extra = [] if gpus else ["--max-local-ranks", str(len(os.sched_getaffinity(0)))]
    strategies = [ctx.baseline, "gpu-index" if gpus else "index"]
    df = ctx.rows("figure7", [ctx.scale.pems], strategies, ctx.scale.figure7_worlds,
                  ctx.scale.figure7_epochs, extra)  # fmt: skip
    name = ctx.names()[_label(ctx.scale.pems)]
    return figure7(
        df, ctx.out, f"Figure 7: total time vs GPUs, {name}, {_epochs(ctx.scale.figure7_epochs)}"
    )


STAGE_FUNCS: dict[str, Callable[[Context], list[Path]]] = {
    "figure5": stage_figure5,
    "table3": stage_table3,
    "table4": stage_table4,
    "figure7": stage_figure7,
}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m bench.figures", description=__doc__)
    p.add_argument("--scale", choices=list(SCALES), default="small",
                   help="run sizes: small runs here in about 10 minutes, full is the paper's "
                        "(default: %(default)s)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("plots/paper"),
                   help="directory of the figures and tables (default: %(default)s)")  # fmt: skip
    p.add_argument("--results", type=Path, default=Path("results/paper"),
                   help="directory of the sweep CSVs and run JSONs, one subdirectory per scale, "
                        "reused on re-runs (default: %(default)s)")  # fmt: skip
    p.add_argument("--only", type=names(STAGES), default=list(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)} (default: all)")  # fmt: skip
    p.add_argument("--baseline", choices=STANDARD_DDP[::-1], default="standard",
                   help="Figure 7's standard-DDP strategy; standard-dask is the paper's Dask-backed "
                        "one (default: %(default)s)")  # fmt: skip
    p.add_argument("--no-run", action="store_true",
                   help="render from the data already under --results; run nothing")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="only the per-stage lines")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, path in (("--out", args.out), ("--results", args.results)):
        try:
            check_output_dir(path)
        except ValueError as exc:
            parser.error(f"{flag}: {exc}")
    results = args.results / args.scale
    ctx = Context(SCALES[args.scale], results, args.out, run=not args.no_run, quiet=args.quiet,
                  baseline=args.baseline)  # fmt: skip
    t_all, failed = time.perf_counter(), []
    for i, name in enumerate(args.only, 1):
        head = f"[{i}/{len(args.only)}] {TITLES[name]}"
        ctx.say(f"{head}: {'rendering' if args.no_run else 'running'} ({args.scale} scale)")
        t0 = time.perf_counter()
        try:
            files = STAGE_FUNCS[name](ctx)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            failed.append(name)
            print(f"{head}: FAILED - {exc}", file=sys.stderr, flush=True)
            continue
        shown = ", ".join(str(f) for f in files if f.suffix != ".svg")
        print(
            f"{head}: done in {time.perf_counter() - t0:.0f} s -> {shown}",
            file=sys.stderr,
            flush=True,
        )
    print(f"all stages: {time.perf_counter() - t_all:.0f} s; data under {results}, artefacts under "
          f"{args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
