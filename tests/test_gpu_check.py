"""The GPU check without a GPU: its plan is accepted by the real commands, it refuses to pretend,
its runner records ok/failed/overrun steps, its report reads only the CSVs, and the captured
train step's code path computes the training loop's losses."""

from __future__ import annotations

import copy
import sys

import pandas as pd
import pytest
import torch
from conftest import random_series

from bench.gpu import asv_once, check, memory, nccl, paths, report
from bench.gpu.graph_step import TrainStep
from bench.gpu.plan import TOTAL_BUDGET_S, Step, build_plan, check_argv, total_budget
from bench.gpu.rows import append_rows, row
from bench.sweep.results import append_row
from pgti_core.batching import WindowSpec, build_strategy, split_starts
from pgti_core.data.normalize import train_window_stats
from pgti_core.models.registry import build_model
from pgti_core.train.loop import fit

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU path")


def test_dry_run_prints_each_steps_command_and_budget(tmp_path, capsys):
    assert check.main(["--dry-run", "--out", str(tmp_path / "gpu")]) == 0
    out = capsys.readouterr().out
    plan = build_plan(tmp_path / "gpu")
    for step in plan:
        assert step.command_line() in out
    assert f"budget: {total_budget(plan)} s of {TOTAL_BUDGET_S} s" in out
    assert total_budget(plan) <= TOTAL_BUDGET_S
    assert not (tmp_path / "gpu").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_every_step_is_accepted_by_its_real_command(tmp_path):
    plan = build_plan(tmp_path)
    assert {s.module for s in plan} >= {"pytest", "bench.run"}
    for step in plan:
        check_argv(step)  # raises on a rejected command line


def test_check_argv_rejects_what_the_command_would():
    with pytest.raises(SystemExit):
        check_argv(Step("sweep", ("-m", "bench.run", "--gpus", "0"), 1, "bad"))
    with pytest.raises(SystemExit):
        check_argv(Step("nccl", ("-m", "bench.gpu.nccl", "--worlds", "1"), 1, "no --out"))


def test_budget_counts_the_background_step_before_its_waiter():
    plan = [
        Step("data", ("-m", "x"), 100, "", background=True),
        Step("a", ("-m", "x"), 10, ""),
        Step("b", ("-m", "x"), 20, "", after="data"),
    ]
    assert total_budget(plan) == 120
    assert total_budget(plan[:2]) == 100


@no_cuda
def test_without_cuda_the_check_says_so_and_fails(tmp_path, capsys):
    assert check.main(["--out", str(tmp_path / "gpu")]) == 1
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "gpu").exists()


@no_cuda
@pytest.mark.parametrize("probe", [memory, nccl, paths, asv_once])
def test_without_cuda_each_probe_fails_and_writes_nothing(probe, tmp_path, capsys):
    out = tmp_path / "checks.csv"
    assert probe.main(["--out", str(out)]) == 1
    assert "no CUDA" in capsys.readouterr().err and not out.exists()


def test_asv_device_benchmarks_are_found_and_skip_without_cuda():
    found = asv_once.benchmarks(asv_once.MODULE)
    names = {n for n, _, _ in found}
    assert {"DeviceBatches.time_batches", "DeviceStep.time_step"} <= names
    assert len(found) == len(paths.PATHS) + 2
    if not torch.cuda.is_available():
        name, cls, params = found[0]
        assert asv_once.run_once(name, cls, params, "cpu")["status"] == "skipped"


def test_paths_probe_runs_its_code_on_cpu(monkeypatch):
    """The probe's own logic (identity, per-path timing, eager baseline) on a CPU device; only
    the captured modes fail there, saying they need CUDA."""
    monkeypatch.setattr(paths, "WARMUP_STEPS", 2)
    args = paths.build_parser().parse_args(
        ["--out", "x.csv", "--steps", "3", "--nodes", "20", "--time-steps", "2000"]
    )
    rows = {r["case"]: r for r in paths.measure(args, "cpu")}
    for name in ("index+prefetch", "gpu-index", "gpu-index+reuse"):
        assert rows[f"identity {name}"]["status"] == "ok"
    for name in paths.PATHS:
        assert rows[f"step {name}"]["status"] == "ok" and rows[f"step {name}"]["value"] > 0
    assert rows["eager"]["status"] == "ok"
    assert rows["graph"]["status"] == "failed" and "CUDA" in rows["graph"]["error"]


@pytest.mark.slow
def test_nccl_probe_logic_with_gloo_on_cpu():
    """Spawning, the exact all-reduce check and the timing, with gloo standing in for NCCL."""
    r = nccl.run_world(2, timeout_s=60, backend="gloo")
    assert r["status"] == "ok", r
    assert r["value"] > 0 and r["device"] == "cpu (gloo)"


def test_runner_records_ok_failed_and_overrun_steps(tmp_path):
    py = "import sys; print('step ran'); sys.exit({})"
    plan = [
        Step("data", ("-c", "print('made data')"), 60, "", background=True),
        Step("good", ("-c", py.format(0)), 60, ""),
        Step("bad", ("-c", py.format(3)), 60, ""),
        Step("slow", ("-c", "import time; time.sleep(60)"), 1, ""),
        Step("sweep", ("-c", py.format(0)), 60, "", after="data"),
    ]
    rows = check.run_plan(plan, tmp_path, budget_s=120)
    status = {r["case"]: (r["status"], r["error"]) for r in rows}
    assert status["data"] == ("ok", "") and status["good"] == ("ok", "")
    assert status["sweep"] == ("ok", "")
    assert status["bad"] == ("failed", "exit status 3")
    assert status["slow"][0] == "failed" and "budget" in status["slow"][1]
    log = (tmp_path / check.LOG).read_text()
    assert "made data" in log and log.count("\nstep ran\n") == 3


def _sweep_row(strategy: str, status: str = "ok", **kw) -> dict:
    return dict(dataset="pems-bay", strategy=strategy, status=status, device="cuda: NVIDIA H200",
                step_ms_p50=5.0, device_peak_allocated=2**30, device_peak_nvml=2**30 + 2**25,
                analytic_device_bytes=2**30, **kw)  # fmt: skip


def test_report_passes_only_when_nothing_failed(tmp_path):
    dev = "cuda: NVIDIA H200"
    append_rows(tmp_path / "checks.csv", [
        row("paths", "step index", "ok", device=dev, value=9.0, unit="ms/step"),
        row("graph", "graph", "ok", device=dev, value=2.0, unit="ms/step", reference=9.0),
        row("nccl", "world 2", "skipped", device=dev, error="Duplicate GPU detected"),
    ])  # fmt: skip
    for s in ("index", "gpu-index"):
        append_row(tmp_path / "sweep.csv", _sweep_row(s))
    append_row(tmp_path / "sweep.csv", _sweep_row("standard", "skipped", error="predicted"))
    append_row(tmp_path / "sweep.csv", dict(_sweep_row("index"), device_peak_nvml=None))
    v = report.write(tmp_path)
    assert v.passed and "PASSED" in v.text and dev in v.text
    summary = (tmp_path / report.SUMMARY).read_text()
    assert "Duplicate GPU detected" in summary and "gpu-index" in summary
    assert (tmp_path / report.FIGURE).stat().st_size > 10_000
    append_row(tmp_path / "sweep.csv", _sweep_row("gpu-index", "failed", error="CUDA error"))
    v = report.write(tmp_path)
    assert not v.passed and "sweep pems-bay gpu-index: failed CUDA error" in v.text
    assert len(list(tmp_path.iterdir())) <= 8


def test_report_of_nothing_fails(tmp_path):
    assert not report.write(tmp_path).passed


def test_rows_reject_unknown_status_and_columns():
    with pytest.raises(ValueError, match="status"):
        row("x", "y", "fine")
    with pytest.raises(ValueError, match="fields"):
        row("x", "y", "ok", speed=1)
    assert pd.Index(["check", "case"]).isin(list(row("x", "y", "ok"))).all()


def test_eager_train_step_computes_the_training_loops_losses():
    """The captured step's code path, run without capture, equals fit() step for step."""
    spec, series = WindowSpec(4, 3), random_series(steps=300)
    starts = split_starts(series.num_steps, spec)["train"]
    norm = train_window_stats(series.values, spec, starts)
    make = lambda shuffle: build_strategy("index", series, spec, starts, norm, batch_size=16,  # noqa: E731
                                          shuffle=shuffle)  # fmt: skip
    torch.manual_seed(0)
    model = build_model("dcrnn-paper", num_nodes=series.num_nodes, num_features=2,
                        edge_index=series.edge_index, edge_weight=series.edge_weight, lags=4,
                        horizon=3)  # fmt: skip
    initial = copy.deepcopy(model)
    train = make(True)
    result = fit(model, train, make(False), norm, epochs=1, max_steps=6)
    train.set_epoch(0)
    plan = train.plan()[:6]
    x0, y0 = train.batch(plan[0])
    step = TrainStep(initial, norm, x0.shape, y0.shape, "cpu", mode="eager")
    losses = [step(*train.batch(s)).item() for s in plan]
    assert losses == result.epochs[0].losses


def test_captured_modes_need_cuda():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="CUDA"):
        TrainStep(model, None, (1, 2), (1, 2), "cpu", mode="graph")
    with pytest.raises(ValueError, match="mode"):
        TrainStep(model, None, (1, 2), (1, 2), "cpu", mode="fast")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_step_replays_the_eager_losses_on_cuda():
    series = random_series(steps=300, nodes=20)
    spec = WindowSpec(4, 3)
    starts = split_starts(series.num_steps, spec)["train"]
    norm = train_window_stats(series.values, spec, starts)
    strategy = build_strategy("gpu-index", series, spec, starts, norm, batch_size=16, device="cuda")
    batches = [b for b in (strategy.batch(s) for s in strategy.plan()) if len(b[0]) == 16][:10]
    torch.manual_seed(0)
    model = build_model("dcrnn-paper", num_nodes=20, num_features=2, edge_index=series.edge_index,
                        edge_weight=series.edge_weight, lags=4, horizon=3).cuda()  # fmt: skip
    got = {}
    for mode in ("eager", "graph"):
        step = TrainStep(copy.deepcopy(model), norm, batches[0][0].shape, batches[0][1].shape,
                         "cuda", mode=mode)  # fmt: skip
        got[mode] = torch.stack([step(x, y) for x, y in batches]).cpu()
    assert torch.allclose(got["graph"], got["eager"], rtol=1e-4, atol=0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
