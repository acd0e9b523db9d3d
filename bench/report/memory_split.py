"""Where a rank's peak host memory goes: runtime, model and data, beside the analytic floor.

Reads only results rows (``host_runtime_peak``, ``host_model_peak`` and ``host_data_peak`` come
from the model-only probe, :mod:`bench.perf.probe`). For each dataset, strategy, world size and
host copy: a stacked bar of the measured peak PSS of the largest rank split into runtime (an idle
rank), model (the probe's training memory) and data (the rest), next to a hatched bar of the
floor, runtime + model + what the strategy's buffers hold by their shapes (``analytic_host_bytes``;
a shared copy split between the node's ranks). The markdown table adds the data part over that
bound, 1.10 x that floor + two batches (DESIGN's target: <= 1), and the guard's prediction against the node
peak the parent measured.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from bench.report.summary import dataset_title  # noqa: E402

KEYS = ("dataset", "model", "strategy", "world_size", "mode", "host_copy")
_GIB = 2**30
_COLORS = {"runtime": "#9e9e9e", "model": "#4c72b0", "data": "#dd8452", "floor": "white"}


def split_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median over repeats of the split, one row per :data:`KEYS`; empty without probe columns."""
    need = ("host_model_peak", "host_runtime_peak", "host_data_peak")
    if df.empty or any(c not in df for c in need):
        return pd.DataFrame()
    ok = df[(df["status"] == "ok") & df["host_model_peak"].notna()].copy()
    if ok.empty:
        return pd.DataFrame()
    ok["host_copy"] = ok["host_copy"].replace("", "private")
    shared = ok["host_copy"] == "shared"
    ranks = ok["ranks_per_node"].where(ok["ranks_per_node"] > 0, 1).astype(float)
    analytic = ok["analytic_host_bytes"].astype(float)
    ok["data_floor"] = analytic.where(~shared, analytic / ranks)
    window = (ok["lags"] + ok["horizon"]) * ok["nodes"] * ok["features"] * 4
    ok["batch2"] = 2.0 * ok["batch_per_rank"] * window
    ok["runtime"] = ok["host_runtime_peak"].astype(float)
    ok["model_mem"] = (ok["host_model_peak"] - ok["host_runtime_peak"]).astype(float)
    ok["data"] = ok["host_data_peak"].astype(float)
    ok["peak"] = ok["host_peak_pss_max_rank"].astype(float)
    ok["node"] = ok["host_peak_node"].astype(float)
    ok["predicted"] = ok["predicted_peak_node"].astype(float)
    ok = ok.astype({"nodes": float, "steps": float})
    cols = ["runtime", "model_mem", "data", "peak", "data_floor", "batch2", "node", "predicted"]
    cols += ["nodes", "steps"]
    out = ok.groupby(list(KEYS), sort=False)[cols].median().reset_index()
    out["data_over_floor"] = out["data"] / (1.10 * out["data_floor"] + out["batch2"])
    out["guard_error"] = out["predicted"] / out["node"] - 1
    return out


def split_figure(table: pd.DataFrame) -> Figure | None:
    """Stacked runtime/model/data bars with the floor beside each, one panel per dataset."""
    if table.empty:
        return None
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(max(6.0, 1.1 * len(table) + 2), 4.2), squeeze=False
    )
    for ax, name in zip(axes[0], datasets, strict=True):
        part = table[table["dataset"] == name]
        x = np.arange(len(part))
        bottom = np.zeros(len(part))
        for col, key in (("runtime", "runtime"), ("model_mem", "model"), ("data", "data")):
            vals = part[col].clip(lower=0).to_numpy() / _GIB
            ax.bar(x - 0.2, vals, 0.38, bottom=bottom, color=_COLORS[key], edgecolor="black")
            bottom += vals
        floor = (part["runtime"] + part["model_mem"] + part["data_floor"]).to_numpy() / _GIB
        ax.bar(x + 0.2, floor, 0.38, color="white", edgecolor="black", hatch="//")
        labels = [
            f"{r.strategy}\nP={r.world_size}"
            + ("\nshared" if r.host_copy == "shared" else "")
            + ("\nemulated" if r.mode == "emulated" else "")
            for r in part.itertuples()
        ]
        ax.set_xticks(x, labels, fontsize=8)
        first = part.iloc[0]
        ax.set_title(dataset_title(name, int(first["nodes"]), int(first["steps"])), fontsize=10)
        ax.set_ylabel("peak host PSS of the largest rank (GiB)")
        ax.grid(axis="y", alpha=0.3)
    handles = [
        Patch(facecolor=_COLORS[c], edgecolor="black", label=c) for c in _COLORS if c != "floor"
    ]
    handles.append(
        Patch(
            facecolor="white",
            edgecolor="black",
            hatch="//",
            label="runtime + model + analytic data",
        )
    )
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def split_markdown(df: pd.DataFrame) -> str:
    """The summary section: the split per point, its floor and the guard's error."""
    from bench.report.summary import fmt_bytes, md_table

    table = split_table(df)
    lines = ["", "## Memory split (runtime, model, data) and the guard", ""]
    if table.empty:
        return "\n".join([*lines, "No row carries the model probe's columns.", ""])
    lines.append(
        "Largest rank's peak PSS = runtime (idle rank) + model (probe) + data (the rest). "
        "data / bound = data over (1.10 x analytic bytes per rank + 2 batches); target <= 1. "
        "guard = predicted node peak / measured node peak - 1; target within ±15%."
    )
    lines.append("")
    rows = [
        [
            r.dataset, r.strategy, f"{r.world_size}{' emulated' if r.mode == 'emulated' else ''}",
            r.host_copy, fmt_bytes(r.peak),
            fmt_bytes(r.runtime), fmt_bytes(r.model_mem), fmt_bytes(r.data), fmt_bytes(r.data_floor),
            f"{r.data_over_floor:.2f}", fmt_bytes(r.node), fmt_bytes(r.predicted),
            f"{r.guard_error:+.1%}",
        ]
        for r in table.itertuples()
    ]  # fmt: skip
    header = [
        "dataset", "strategy", "P", "host copy", "peak/rank", "runtime", "model", "data",
        "analytic data", "data / bound", "node (measured)", "node (predicted)", "guard",
    ]  # fmt: skip
    return "\n".join([*lines, *md_table(header, rows), ""])
