"""Figure 5: validation MAE per epoch, standard vs index (runs of ``python -m pgti_core.train``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.report.axes import save_figure, strategy_styles, suptitle
from bench.report.paper import MODEL, outdir, slug
from bench.report.summary import value_unit


def figure5_path(runs_dir: Path, spec: str, strategy: str, epochs: int, seed: int = 0) -> Path:
    """Where the metrics JSON of one Figure 5 run is kept."""
    return Path(runs_dir) / f"{slug(spec)}.{strategy}.e{epochs}.s{seed}.json"


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
        ax.set_title(textwrap.fill(names.get(dataset, dataset), 48), fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation MAE ({value_unit(dataset)})")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="center right")
    suptitle(
        fig,
        f"Figure 5: validation MAE (masked, de-normalized) per epoch, standard vs index ({MODEL})",
    )
    return save_figure(fig, outdir(out_dir) / "figure5")
