"""bench.figures renders every paper artefact from small fixture rows and run summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import figure5, figure7, figures, paper, tables
from bench.sweep.results import append_row, read_results

SMALL = paper.SCALES["small"]
PEMS_BAY, CHICKENPOX, WINDMILL = (SMALL.figure5[k] for k in paper.QUALITY)
MIB = 1 << 20


def _row(dataset: str, strategy: str, world: int = 1, repeat: int = 0, **kw) -> dict:
    row = dict(
        run_id="r1", status="ok", mode="measured", strategy=strategy, model=paper.MODEL,
        dataset=dataset, nodes=20, steps=522, features=1, lags=4, horizon=4, world_size=world,
        batch_per_rank=4, epochs=2, device="cpu: test", repeat=repeat, point_key=f"{dataset}{strategy}{world}{repeat}",
        total_s=10.0 + repeat, epoch_s_std=0.1, host_peak_pss_max_rank=(900 if strategy == "standard" else 400) * MIB,
        host_baseline_pss=350 * MIB, best_val_mae=2.5 + 0.01 * repeat,
    )  # fmt: skip
    row.update(kw)
    return row


def _csv(path: Path, rows: list[dict]):
    for r in rows:
        append_row(path, r)
    return read_results(path)


def _summary(dataset: str, strategy: str, maes: list[float]) -> dict:
    return {
        "config": {"dataset": dataset, "strategy": strategy},
        "epochs": [{"epoch": i, "val": {"mae": m}} for i, m in enumerate(maes)],
    }


def _nonempty(paths: list[Path]) -> None:
    assert paths
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0, p


def test_figure5_renders_png_and_svg(tmp_path):
    maes = [3.0, 2.6, 2.4]
    runs = [
        _summary(d, s, maes)
        for d in (PEMS_BAY, CHICKENPOX, WINDMILL)
        for s in ("standard", "index")
    ]
    paths = figure5.figure5(runs, tmp_path)
    _nonempty(paths)
    assert {p.name for p in paths} == {"figure5.png", "figure5.svg"}
    assert figure5.val_curves(runs)[CHICKENPOX] == {"standard": maes, "index": maes}


def test_figure5_without_runs_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="summaries"):
        figure5.figure5([], tmp_path)


def test_table3_means_and_cut_and_left_out_rows(tmp_path):
    rows = [
        _row(d, s, repeat=r)
        for d in (CHICKENPOX, PEMS_BAY)
        for s in ("standard", "index")
        for r in range(3)
    ]
    rows.append(_row(CHICKENPOX, "index", repeat=3, status="failed", error="boom", total_s=None))
    df = _csv(tmp_path / "t3.csv", rows)
    paths = tables.table3(df, tmp_path / "out", {CHICKENPOX: "Chickenpox"})
    _nonempty(paths)
    md = (tmp_path / "out" / "table3.md").read_text()
    assert "| Chickenpox | dcrnn-paper | index | 3 | 11 ± 1 |" in md  # failed repeat excluded
    assert "index cuts the peak by 55.6%" in md  # 1 - 400/900
    assert "status=failed: boom" in md


def test_table4_says_when_no_gpu_was_present(tmp_path):
    rows = [_row("pems", s, repeat=r) for s in ("index", "gpu-index") for r in range(2)]
    df = _csv(tmp_path / "t4.csv", rows)
    _nonempty(tables.table4(df, tmp_path))
    md = (tmp_path / "table4.md").read_text()
    assert "No GPU was present" in md and "n/a" in md
    gpu = _csv(
        tmp_path / "t4g.csv",
        [_row("pems", "gpu-index", device="NVIDIA H100", device_peak_allocated=5 * MIB)],
    )
    tables.table4(gpu, tmp_path / "gpu")
    md = (tmp_path / "gpu" / "table4.md").read_text()
    assert "kept the series on the GPU" in md and "5 MiB" in md


def test_figure7_measured_and_emulated_points(tmp_path):
    rows = []
    for s, t1 in (("standard", 100.0), ("index", 60.0)):
        for w in (1, 2, 4, 8, 16, 32, 64, 128):
            mode = "measured" if w <= 2 else "emulated"
            rows.append(
                _row("pems", s, world=w, mode=mode, total_s=t1 / w**0.5, point_key=f"{s}{w}")
            )
    rows.append(_row("pems", "index", world=128, status="skipped", error="too big", point_key="x"))
    paths = figure7.figure7(_csv(tmp_path / "f7.csv", rows), tmp_path)
    _nonempty(paths)
    assert {p.name for p in paths} == {"figure7.png", "figure7.svg", "figure7.md"}
    md = (tmp_path / "figure7.md").read_text()
    assert "at P = 128: index" in md and "emulated: standard, index" in md
    assert "| index | 128 | emulated |" in md


def test_figure7_prefers_standard_dask_and_gpu_index():
    present = {"standard", "standard-dask", "index", "gpu-index"}
    assert figure7._pick(present, paper.STANDARD_DDP) == "standard-dask"
    assert figure7._pick(present, paper.DISTRIBUTED_INDEX) == "gpu-index"
    assert figure7._pick({"standard", "index"}, paper.DISTRIBUTED_INDEX) == "index"


def test_figure7_without_ok_rows_is_an_error(tmp_path):
    df = _csv(tmp_path / "f7.csv", [_row("pems", "index", status="failed", error="x")])
    with pytest.raises(ValueError, match="no ok rows"):
        figure7.figure7(df, tmp_path)


def test_cli_no_run_renders_all_four_from_recorded_data(tmp_path, capsys):
    data = tmp_path / "results" / "small"
    for d in (PEMS_BAY, CHICKENPOX, WINDMILL):
        for s in ("standard", "index"):
            path = figure5.figure5_path(data / "figure5", d, s, SMALL.figure5_epochs)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_summary(d, s, [2.0, 1.5])))
    t3 = [SMALL.table3[k] for k in paper.QUALITY]
    rows3 = [_row(d, s, epochs=SMALL.table3_epochs) for d in t3 for s in ("standard", "index")]
    m = SMALL.table3_metr_la
    rows3 += [_row(m, s, epochs=SMALL.table3_epochs, model="a3tgcn") for s in ("standard", "index")]
    _csv(data / "table3.csv", [*rows3, _row("metr-la", "index", point_key="other-run")])
    e4, e7 = SMALL.table4_epochs, SMALL.figure7_epochs
    _csv(data / "table4.csv", [_row(SMALL.pems, s, epochs=e4) for s in ("index", "gpu-index")])
    rows7 = [
        _row(SMALL.figure7, s, world=w, point_key=f"{s}{w}", epochs=e7)
        for s in ("standard", "index")
        for w in (1, 2)
    ]
    _csv(data / "figure7.csv", rows7)
    out = tmp_path / "plots"
    rc = figures.main(["--no-run", "--results", str(tmp_path / "results"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    for name in ("figure5.png", "table3.md", "table3.csv", "table4.md", "figure7.png"):
        assert (out / name).stat().st_size > 0, name
    err = capsys.readouterr().err
    assert err.count(": done in") == 4
    md = (out / "table3.md").read_text()
    assert f"METR-LA-shaped ({m}, 207 nodes × 12000 steps) | a3tgcn | index |" in md  # artifact row
    assert "| metr-la |" not in md  # rows of other runs are left out


def test_cli_no_run_without_data_fails_per_stage(tmp_path, capsys):
    rc = figures.main(
        [
            "--no-run",
            "--results",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--only",
            "table3,figure5",
        ]
    )
    assert rc == 1
    assert "failed: table3, figure5" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--scale", "huge"], ["--only", "figure6"], ["--only", ""]],
)
def test_cli_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        figures.main(argv)
    assert exc.value.code == 2


def test_cli_out_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SystemExit) as exc:
        figures.main(["--out", str(f), "--no-run"])
    assert exc.value.code == 2


def test_scales_parse_and_small_is_smallest():
    for scale in paper.SCALES.values():
        assert set(scale.figure5) == set(scale.table3) == set(paper.QUALITY)
        for spec in scale.specs():
            paper.dataset_label(spec)  # raises on a bad spec
    small, full = paper.SCALES["small"], paper.SCALES["full"]
    assert small.figure5_epochs < full.figure5_epochs


@pytest.mark.slow
def test_figure5_run_trains_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path / "cache"))
    first = figure5.figure5_run("chickenpox", "index", 2, tmp_path / "runs")
    path = figure5.figure5_path(tmp_path / "runs", "chickenpox", "index", 2)
    stamp = path.stat().st_mtime_ns
    again = figure5.figure5_run("chickenpox", "index", 2, tmp_path / "runs")
    assert path.stat().st_mtime_ns == stamp and again == first
    assert [e["epoch"] for e in first["epochs"]] == [0, 1]
    assert first["config"]["strategy"] == "index" and first["config"]["dataset"] == "chickenpox"


def test_first_line_says_what_is_reused_and_stages_tally(tmp_path, capsys):
    data = tmp_path / "results" / "small"
    t4 = [_row(paper.dataset_label(SMALL.pems), s, repeat=r, epochs=SMALL.table4_epochs,
               timestamp_utc="2026-11-24T09:00:00Z", git_sha="abcdef1234")
          for s in ("index", "gpu-index") for r in range(2)]  # fmt: skip
    _csv(data / "table4.csv", t4)
    argv = [
        "--results",
        str(tmp_path / "results"),
        "--out",
        str(tmp_path / "out"),
        "--only",
        "table4",
    ]
    assert figures.main([*argv, "--no-run"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("bench.figures: rendering table4") and "table4: 4 rows" in err[0]
    assert "2026-11-24" in err[0] and "abcdef1" in err[0]
    assert any("4 rows: 4 re-used from" in line and "0 measured now" in line for line in err)
    ctx = figures.Context(SMALL, tmp_path / "empty", tmp_path / "out")
    assert "everything is measured" in figures.first_line(ctx, ["table3", "figure5"])
    ctx = figures.Context(SMALL, data, tmp_path / "out")
    assert figures.first_line(ctx, ["table4"]).startswith("bench.figures: RE-USING")


def test_a_stage_tallies_the_rows_of_all_its_queries(tmp_path):
    """Table 3 has two queries (dcrnn-paper, and A3T-GCN on METR-LA): its tally counts both."""
    label = paper.dataset_label("chickenpox")
    rows = [_row(label, s, repeat=r, epochs=2, model=m)
            for m in (paper.MODEL, "a3tgcn") for s in ("standard", "index") for r in range(3)]  # fmt: skip
    _csv(tmp_path / "table3.csv", rows)
    ctx = figures.Context(SMALL, tmp_path, tmp_path / "out", run=False)
    for model in (paper.MODEL, "a3tgcn"):
        query = figures.Query("table3", ("chickenpox",), ("standard", "index"), (1,), 2, (), model)
        assert len(ctx.rows(query)) == 6
    assert ctx.tally["table3"] == (12, 0, tmp_path / "table3.csv")
    assert figures.tally_text(ctx.tally["table3"]).startswith("12 rows: 12 re-used from")
