"""Tables 3 and 4: runtime and peak memory, mean ± std over repeats, as Markdown and CSV."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bench.report.paper import left_out_note, ok_rows, outdir
from bench.report.summary import fmt_bytes, fmt_num, md_table, plus_minus


def over_repeats(df: pd.DataFrame, keys: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean, sample std (``<col>_sd``) and count (``runs``) of ``columns`` over the ok rows per ``keys``."""
    ok = ok_rows(df)
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
    keys = ["dataset", "model", "strategy"]
    agg = over_repeats(df[df["world_size"] == 1], keys, [*cols, "host_added"])
    rows, notes = [], []
    for dataset, part in agg.groupby("dataset", sort=False):
        for r in part.itertuples():
            rows.append(
                [
                    names.get(dataset, dataset),
                    r.model,
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
        *md_table(["dataset", "model", "strategy", "runs", "runtime (s)", "peak host", "added by the run",
                    "best val MAE"], rows),
        "",
        *notes,
        *left_out_note(df),
    ]  # fmt: skip
    out_dir = outdir(out_dir)
    (out_dir / "table3.md").write_text("\n".join(lines) + "\n")
    agg.insert(0, "name", agg["dataset"].map(lambda d: names.get(d, d)))
    agg.to_csv(out_dir / "table3.csv", index=False)
    return [out_dir / "table3.md", out_dir / "table3.csv"]


def gpu_present(df: pd.DataFrame) -> bool:
    """Whether any ok row ran on a GPU (its device memory was measured)."""
    ok = ok_rows(df)
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
        *left_out_note(df),
    ]  # fmt: skip
    out_dir = outdir(out_dir)
    (out_dir / "table4.md").write_text("\n".join(lines) + "\n")
    agg.assign(gpu_present=on_gpu).to_csv(out_dir / "table4.csv", index=False)
    return [out_dir / "table4.md", out_dir / "table4.csv"]
