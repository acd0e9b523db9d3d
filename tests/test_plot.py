"""Figures, derived speedups and the summary from results rows (bench.plot, bench.report.summary)."""

from __future__ import annotations

import math

import pytest

from bench.report.axes import ratio_axis
from bench.report.charts import bars_figure
from bench.report.plot import main, make_plots, scaling_figure, strategy_styles
from bench.report.summary import aggregate, facet_title, left_out_lines, with_speedups
from bench.sweep.results import append_row, read_results

STRATEGIES = {
    "standard": (24.0, 40.0),
    "index": (1.0, 10.0),
    "gpu-index": (1.0, 8.0),
    "partitioned": (1.0, 12.0),
}
WORLDS = (1, 2, 4, 8, 128)
DATASETS = {"metr-la": (34272, 207, 2), "tiny": (2000, 50, 2)}


def sweep_rows(strategies=STRATEGIES, worlds=WORLDS, repeats=2, datasets=DATASETS) -> list[dict]:
    """Rows of a small sweep: time T1/P exactly (+-2% across repeats), P = 128 emulated."""
    rows = []
    for ds, (steps, nodes, feats) in datasets.items():
        raw = steps * nodes * feats * 4
        for strategy, (mem, t1) in strategies.items():
            for p in worlds:
                for rep in range(repeats):
                    jitter = 1 + 0.02 * (rep - (repeats - 1) / 2)
                    held = raw * mem / (p if strategy == "partitioned" else 1)
                    rows.append({
                        "point_key": f"{ds}-{strategy}-{p}-{rep}", "repeat": rep, "status": "ok",
                        "mode": "emulated" if p == 128 else "measured", "strategy": strategy,
                        "model": "dcrnn-paper", "dataset": ds, "nodes": nodes, "steps": steps,
                        "features": feats, "lags": 12, "horizon": 12, "world_size": p,
                        "batch_per_rank": 64, "epochs": 2, "device": "cpu",
                        "total_s": t1 / p * jitter, "train_s": t1 / p * jitter * 0.9,
                        "epoch_s_mean": t1 / p / 2 * jitter, "epoch_s_std": 0.01,
                        "samples_per_s": 1000.0 * p / jitter,
                        "host_peak_pss_max_rank": int(held + 3e8), "analytic_host_bytes": int(held),
                        "device_peak_allocated": raw if strategy == "gpu-index" else None,
                        "analytic_device_bytes": raw if strategy == "gpu-index" else None,
                    })  # fmt: skip
    return rows


FAILURES = [
    {"point_key": "f1", "status": "oom", "mode": "measured", "strategy": "standard", "model": "dcrnn-paper",
     "dataset": "metr-la", "world_size": 16, "error": "MemoryError: node ran out at 23 GiB"},
    {"point_key": "f2", "status": "skipped", "mode": "emulated", "strategy": "standard", "model": "dcrnn-paper",
     "dataset": "metr-la", "world_size": 256, "error": "predicted peak 300 GiB exceeds 21 GiB"},
    {"point_key": "f3", "status": "failed", "mode": "measured", "strategy": "index", "model": "dcrnn-paper",
     "dataset": "metr-la", "world_size": 16, "error": "RuntimeError: gloo timeout\nsecond line"},
]  # fmt: skip


def write_csv(path, rows):
    for r in rows:
        append_row(path, r)
    return path


@pytest.fixture(scope="module")
def sweep_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("res") / "sweep.csv", sweep_rows() + FAILURES)


def test_speedup_efficiency_and_vs_standard_are_derived_exactly(sweep_csv):
    agg = with_speedups(aggregate(read_results(sweep_csv)), "total_s")
    agg = agg[(agg["n_ok"] > 0) & (agg["dataset"] == "metr-la")].set_index(
        ["strategy", "world_size"]
    )
    for s, (_, t1) in STRATEGIES.items():
        for p in WORLDS:
            r = agg.loc[(s, p)]
            assert r["base_world"] == 1
            assert r["speedup"] == pytest.approx(p, rel=1e-9)
            assert r["efficiency"] == pytest.approx(1.0, rel=1e-9)
            assert r["vs_standard"] == pytest.approx(STRATEGIES["standard"][1] / t1, rel=1e-9)
            assert r["total_s_sd"] > 0  # repeats differ by 2%
            # two runs at -1%/+1%: each mean's 95% half-width is t(1) 12.706 x 1% of it
            rel = math.sqrt(2) * 12.706 * 0.01
            assert r["speedup_ci95"] == pytest.approx(0.0 if p == 1 else p * rel, rel=1e-3)
            if s != "standard":
                assert r["vs_standard_ci95"] == pytest.approx(r["vs_standard"] * rel, rel=1e-3)
        assert agg.loc[(s, 1), "speedup_sd"] == 0.0
    assert (agg["epoch_s_mean_sd"] > 0).all() and (agg["epoch_s_mean_sd"] != 0.01).all()


def test_a_single_run_shows_its_epoch_to_epoch_std(tmp_path):
    rows = sweep_rows({"index": (1.0, 10.0)}, (1, 2), 1, {"tiny": DATASETS["tiny"]})
    agg = aggregate(read_results(write_csv(tmp_path / "r.csv", rows)))
    assert (agg["epoch_s_mean_sd"] == 0.01).all() and agg["total_s_sd"].isna().all()


def test_make_plots_writes_every_figure_and_the_summary(sweep_csv, tmp_path):
    df = read_results(sweep_csv)
    written = make_plots(df, tmp_path / "plots")
    names = {p.name for p in written}
    for ds in DATASETS:
        for kind in ("scaling", "epoch_time"):
            assert {f"{kind}_{ds}_dcrnn-paper.png", f"{kind}_{ds}_dcrnn-paper.svg"} <= names
    for kind in ("memory_host", "memory_device"):
        assert {f"{kind}_dcrnn-paper.png", f"{kind}_dcrnn-paper.svg"} <= names
    for p in written:
        assert p.is_file() and p.stat().st_size > 1000, p
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if p.suffix == ".svg":
            assert "<svg" in p.read_text()[:2000]
    summary = (tmp_path / "plots" / "summary.md").read_text()
    assert "| partitioned | 128 | emulated | 2 ok |" in summary
    assert "RuntimeError: gloo timeout second line" in summary  # left out, on one line
    assert "skipped" in summary and "oom" in summary


def test_emulated_points_are_hollow_and_dashed(sweep_csv):
    agg = with_speedups(aggregate(read_results(sweep_csv)), "total_s")
    part = agg[(agg["n_ok"] > 0) & (agg["dataset"] == "tiny")]
    fig = scaling_figure(part, "t", strategy_styles(part["strategy"]), "total_s")
    markers = {m for _, m in strategy_styles(part["strategy"]).values()}
    lines = [
        ln for ax in fig.axes for ln in ax.get_lines() if ln.get_marker() in markers
    ]  # not caps
    emulated = [ln for ln in lines if 128 in ln.get_xdata()]
    measured = [ln for ln in lines if 1 in ln.get_xdata()]
    assert emulated and measured
    assert all(
        ln.get_linestyle() == "--" and ln.get_markerfacecolor() == "white" for ln in emulated
    )
    assert all(ln.get_linestyle() == "-" and ln.get_markerfacecolor() != "white" for ln in measured)


def test_plots_without_standard_or_repeats_do_not_crash(tmp_path):
    rows = sweep_rows(
        {"index": (1.0, 10.0), "my-new": (2.0, 9.0)}, (1, 4), 1, {"tiny": DATASETS["tiny"]}
    )
    written = make_plots(read_results(write_csv(tmp_path / "r.csv", rows)), tmp_path / "out")
    assert any(p.name.startswith("scaling_") for p in written)


def test_cli_names_left_out_rows(tmp_path, capsys):
    rows = sweep_rows({"standard": (24.0, 40.0)}, (1, 2), 1, {"metr-la": DATASETS["metr-la"]})
    csv = write_csv(tmp_path / "r.csv", rows + FAILURES)
    assert main([str(csv), "--out", str(tmp_path / "p"), "--time", "epoch_s_mean"]) == 0
    out = capsys.readouterr().out.splitlines()
    left = [ln for ln in out if ln.startswith("left out")]
    assert len(left) == 3
    assert any(
        "status=oom" in ln and "MemoryError: node ran out" in ln and "P=16" in ln for ln in left
    )
    assert any("status=skipped" in ln and "P=256" in ln for ln in left)
    assert left_out_lines(read_results(csv)) == left
    assert (tmp_path / "p" / "scaling_metr-la_dcrnn-paper.png").is_file()


def test_cli_with_only_failed_rows_writes_summary_and_exits_0(tmp_path, capsys):
    csv = write_csv(tmp_path / "bad.csv", FAILURES)
    out_dir = tmp_path / "p"
    assert main([str(csv), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "nothing to plot" in out and out.count("left out") == 3
    assert [p.name for p in out_dir.iterdir()] == ["summary.md"]
    assert "predicted peak 300 GiB" in (out_dir / "summary.md").read_text()


@pytest.mark.parametrize("make", ["missing", "not-results"])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, make):
    path = tmp_path / "x.csv"
    if make == "not-results":
        path.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exc:
        main([str(path), "--out", str(tmp_path / "p")])
    assert exc.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and str(path) in errors[0]
    assert not (tmp_path / "p").exists()


def _agg(path, rows):
    agg = with_speedups(aggregate(read_results(write_csv(path, rows))))
    return agg[agg["n_ok"] > 0]


def test_plots_tell_what_ran(tmp_path):
    """Synthetic data and CPU ranks named; no empty panel without standard rows; rendered labels."""
    rows = sweep_rows(strategies={"index": (1.0, 10.0)}, datasets={"metr-la": (34272, 207, 2)})
    agg = _agg(tmp_path / "a.csv", rows)
    title = facet_title({"dataset": "metr-la", "nodes": 207, "steps": 34272})
    assert title.startswith("synthetic metr-la profile, 207 nodes × 34272 steps")
    fig = scaling_figure(agg, title, strategy_styles(agg["strategy"]), "total_s")
    axes = fig.get_axes()
    assert len(axes) == 3 and all(a.has_data() for a in axes)  # panel (c) left out, not blank
    assert {a.get_xlabel() for a in axes} == {"world size P (CPU ranks)"}
    assert "left out" in fig._supxlabel.get_text()
    gpu = _agg(tmp_path / "g.csv", [{**r, "device": "cuda: H100"} for r in sweep_rows()])
    fig = scaling_figure(gpu, "t", strategy_styles(gpu["strategy"]), "total_s")
    assert len(fig.get_axes()) == 4
    assert {a.get_xlabel() for a in fig.get_axes()} == {"world size P (GPUs)"}
    assert "_" not in fig.get_axes()[2].get_ylabel()  # no raw T_standard text


def test_bars_are_linear_from_zero_or_points_on_a_log_axis(tmp_path):
    rows = sweep_rows(worlds=(1, 2), strategies={"index": (1.0, 10.0), "standard": (24.0, 11.0)})
    near = _agg(tmp_path / "n.csv", rows)
    fig = bars_figure(near, "t", strategy_styles(near["strategy"]))
    for ax in fig.get_axes():
        assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0 and ax.patches
    far = _agg(tmp_path / "f.csv", sweep_rows())  # worlds 1..128: epoch times span > 20x
    fig = bars_figure(far, "t", strategy_styles(far["strategy"]))
    assert all(ax.get_yscale() == "log" and not ax.patches for ax in fig.get_axes())


@pytest.mark.parametrize(("ylim", "labels"), [((1.1, 1.6), {"1.25", "1.5"}), ((0.2, 70), set())])
def test_ratio_axis_labels_a_narrow_span_between_octaves(ylim, labels):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [1.2, 1.5])
    ratio_axis(ax)
    ax.set_ylim(*ylim)
    fig.canvas.draw()
    lo, hi = ylim
    minor = {
        t.get_text() for t in ax.get_yticklabels(minor=True) if lo <= t.get_position()[1] <= hi
    }
    minor.discard("")
    plt.close(fig)
    assert minor == labels
