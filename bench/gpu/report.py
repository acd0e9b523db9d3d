"""The GPU check's report from its CSVs alone: ``summary.md``, one figure, and the verdict.

Every number shown is read from ``checks.csv`` (the probes' and steps' rows) and ``sweep.csv``
(bench.run's rows); nothing is typed in. The check fails if any row failed: a probe's case, a
step (non-zero exit, killed past its budget) or a sweep point (``failed``/``oom``). Skipped rows
(NCCL refusing two ranks on one GPU, the memory guard skipping a point) are listed with reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bench.gpu.plan import CHECKS_CSV, SWEEP_CSV  # noqa: E402
from bench.sweep.results import read_results  # noqa: E402

SUMMARY = "summary.md"
FIGURE = "gpu_check.png"
GIB = 2**30
SWEEP_COLUMNS = [
    "dataset", "strategy", "status", "device", "step_ms_p50", "samples_per_s", "data_wait_frac",
    "device_peak_allocated", "device_peak_nvml", "analytic_device_bytes", "host_peak_rss_max_rank",
    "error",
]  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str


def load(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(checks, sweep)``; a missing file gives an empty frame."""
    checks = pd.read_csv(out / CHECKS_CSV) if (out / CHECKS_CSV).exists() else pd.DataFrame()
    sweep = read_results(out / SWEEP_CSV) if (out / SWEEP_CSV).exists() else pd.DataFrame()
    return checks, sweep


def verdict(checks: pd.DataFrame, sweep: pd.DataFrame) -> Verdict:
    """Failed rows of both CSVs, as one short text."""
    bad = [] if checks.empty else [
        f"{r.check} {r.case}: {r.error if isinstance(r.error, str) else ''}".strip()
        for r in checks[checks.status == "failed"].itertuples()
    ]  # fmt: skip
    if not sweep.empty:
        bad += [
            f"sweep {r.dataset} {r.strategy}: {r.status} {r.error or ''}".strip()
            for r in sweep[sweep.status.isin(["failed", "oom"])].itertuples()
        ]
    counts = {} if checks.empty else checks.status.value_counts().to_dict()
    if not sweep.empty:
        for s, n in sweep.status.value_counts().items():
            counts[s] = counts.get(s, 0) + int(n)
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    device = _device(checks, sweep)
    if checks.empty and sweep.empty:
        return Verdict(False, f"GPU check on {device}: FAILED: no results were written")
    if bad:
        lines = "\n".join(f"  - {b}" for b in bad)
        return Verdict(False, f"GPU check on {device}: FAILED ({tally})\n{lines}")
    return Verdict(True, f"GPU check on {device}: PASSED ({tally})")


def _device(checks: pd.DataFrame, sweep: pd.DataFrame) -> str:
    for frame in (checks, sweep):
        if not frame.empty and frame.device.notna().any():
            return str(frame.device.dropna().iloc[0])
    return "unknown device"


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)\n"
    text = frame.astype(object).where(frame.notna(), "")
    head = "| " + " | ".join(text.columns) + " |"
    rule = "|" + "---|" * len(text.columns)
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    body = ["| " + " | ".join(cell(v) for v in r) + " |" for r in text.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def _sweep_view(sweep: pd.DataFrame) -> pd.DataFrame:
    if sweep.empty:
        return sweep
    view = sweep[[c for c in SWEEP_COLUMNS if c in sweep.columns]].copy()
    for c in ("device_peak_allocated", "device_peak_nvml", "analytic_device_bytes",
              "host_peak_rss_max_rank"):  # fmt: skip
        view[c] = (view[c] / GIB).round(3)
    return view.rename(columns=lambda c: f"{c} (GiB)" if c in (
        "device_peak_allocated", "device_peak_nvml", "analytic_device_bytes",
        "host_peak_rss_max_rank") else c)  # fmt: skip


def figure(checks: pd.DataFrame, sweep: pd.DataFrame, path: Path) -> None:
    """Sweep step time and device memory per point; device paths and graph-vs-eager ms/step."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ok = sweep[sweep.status == "ok"] if not sweep.empty else sweep
    labels = [f"{r.dataset}\n{r.strategy}" for r in ok.itertuples()] if not ok.empty else []
    _bars(axes[0, 0], labels, {"p50 step": ok.step_ms_p50 if labels else []},
          "bench.run at P = 1: ms per training step", "ms")  # fmt: skip
    mem = {} if not labels else {
        "allocator peak": ok.device_peak_allocated / GIB, "NVML peak": ok.device_peak_nvml / GIB,
        "analytic": ok.analytic_device_bytes / GIB,
    }  # fmt: skip
    _bars(axes[0, 1], labels, mem, "device memory above baseline per point", "GiB")
    for ax, check, title in ((axes[1, 0], "paths", "device paths: ms per step (data included)"),
                             (axes[1, 1], "graph", "train step: eager vs captured")):  # fmt: skip
        sel = checks[(checks.check == check) & (checks.unit == "ms/step") &
                     (checks.status == "ok")] if not checks.empty else checks  # fmt: skip
        names = [c.replace("step ", "") for c in sel.case] if not sel.empty else []
        _bars(ax, names, {"ms/step": sel.value.astype(float) if names else []}, title, "ms")
    fig.suptitle(f"GPU check: {_device(checks, sweep)} (rows that are not ok are left out)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(ax, labels: list[str], series: dict, title: str, unit: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    if not labels:
        ax.text(0.5, 0.5, "no ok rows", ha="center", va="center", transform=ax.transAxes)
        return
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        heights = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce")
        ax.bar(xs, heights.astype(float).fillna(0.0), width, label=name)  # missing: no bar
    ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=0 if len(labels) < 5 else 30)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="lower right")


def write(out: Path) -> Verdict:
    """Write ``summary.md`` and the figure under ``out``; return the verdict."""
    checks, sweep = load(out)
    v = verdict(checks, sweep)
    figure(checks, sweep, out / FIGURE)
    parts = [
        "# GPU check\n",
        "```\n" + v.text + "\n```\n",
        "The `data` step generates the sweep's datasets on one CPU core beside the probes; "
        "`value` is what was measured, `reference` what it is held against.\n",
        "## Steps and probes (`checks.csv`)\n",
        _table(checks),
        "\n## Sweep at P = 1 (`sweep.csv`)\n",
        _table(_sweep_view(sweep)),
        f"\n![GPU check]({FIGURE})\n",
    ]
    (out / SUMMARY).write_text("\n".join(parts))
    return v
