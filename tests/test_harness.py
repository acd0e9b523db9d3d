"""The sweep driver: rows, resume, failures recorded as statuses, bad input, emulation."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import psutil
import pytest

from bench.sweep import driver as bench_run
from bench.sweep.args import split_dataset_list
from bench.sweep.results import COLUMNS, read_results

TINY = "metr-la:nodes=12,steps=1200"
BASE = [
    "--datasets",
    TINY,
    "--epochs",
    "1",
    "--max-steps",
    "3",
    "--quiet",
    "--timeout",
    "120",
    "--no-plots",
]


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PGTI_TEST_TAG", str(tmp_path))  # inherited by every process we start


def _leftovers(tmp_path) -> list[str]:
    """Processes still alive that this test started (they carry its tag in their environment)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            # multiprocessing's resource tracker lives as long as this test process, by design
            if "resource_tracker" in cmd or proc.pid == os.getpid():
                continue
            if proc.environ().get("PGTI_TEST_TAG") == str(tmp_path):
                found.append(cmd)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _sweep(out, *args):
    return bench_run.main([*BASE, "--out", str(out), *args])


@pytest.mark.slow
def test_sweep_rows_and_resume(tmp_path):
    out = tmp_path / "r.csv"
    assert _sweep(out, "--gpus", "1,2", "--strategies", "standard,index") == 0
    df = read_results(out)
    assert list(pd.read_csv(out, nrows=0).columns) == list(COLUMNS)
    assert len(df) == 4 and set(df.status) == {"ok"}
    assert set(df["mode"]) == {"measured"}
    for col in (
        "host_peak_pss_max_rank",
        "epoch_s_mean",
        "samples_per_s",
        "best_val_mae",
        "prep_s",
    ):
        assert df[col].notna().all() and (df[col] > 0).all(), col
    assert df.device.str.startswith("cpu").all()
    assert df.notes.str.contains("no CUDA").all()  # the absent GPU is said, not hidden
    p1 = df[df.world_size == 1].set_index("strategy")
    assert (
        p1.loc["standard", "host_resident_model_bytes"]
        > 10 * p1.loc["index", "host_resident_model_bytes"]
    )
    # resume: nothing new; --force: everything again
    assert _sweep(out, "--gpus", "1,2", "--strategies", "standard,index") == 0
    assert len(read_results(out)) == 4
    assert _sweep(out, "--gpus", "1", "--strategies", "index", "--force") == 0
    assert len(read_results(out)) == 5


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, status, text",
    [
        ("crash:1", "failed", "injected crash"),
        ("oom", "oom", "injected out of memory"),
        ("kill", "killed", "no OOM-killer kill"),
        ("oomkill", "oom", "OOM killer counted"),
        ("hang", "failed", "timeout"),
    ],
)
def test_failures_become_statuses_and_sweep_goes_on(tmp_path, monkeypatch, fault, status, text):
    monkeypatch.setenv("PGTI_FAULT", fault)
    counter = tmp_path / "memory.events"  # stands in for the cgroup's counter the kernel bumps
    counter.write_text("oom 0\noom_kill 0\n")
    monkeypatch.setenv("PGTI_OOM_COUNTER", str(counter))
    out = tmp_path / "r.csv"
    args = [
        "--gpus",
        "1,2",
        "--strategies",
        "index",
        "--timeout",
        "15" if fault == "hang" else "120",
    ]
    failing = [2] if fault == "crash:1" else [1, 2]
    # a sweep in which every point failed says so in its exit status
    nothing_ran = len(failing) == 2 and status in ("failed", "killed")
    assert _sweep(out, *args) == (1 if nothing_ran else 0)
    df = read_results(out).set_index("world_size")
    assert len(df) == 2
    # rank 1 exists only at P = 2: there the point fails and the P = 1 point is unharmed
    for world in (1, 2):
        expected = status if world in failing else "ok"
        assert df.loc[world, "status"] == expected, (world, df.loc[world, "error"])
        if world in failing:
            assert text in df.loc[world, "error"]
    assert _leftovers(tmp_path) == [], "orphaned rank processes"
    # failed and killed points are retried on resume; oom ones are final
    monkeypatch.delenv("PGTI_FAULT")
    assert _sweep(out, *args[:-1], "120") == 0  # no hang now: a loaded host's normal timeout
    retried = len(failing) if status in ("failed", "killed") else 0
    assert len(read_results(out)) == 2 + retried


def test_predicted_oom_is_skipped(tmp_path):
    out = tmp_path / "r.csv"
    argv = [
        "--datasets",
        "pems",
        "--strategies",
        "standard",
        "--gpus",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    assert bench_run.main(argv) == 0
    df = read_results(out)
    assert list(df.status) == ["skipped"]
    assert df.predicted_peak_node.iloc[0] > 100 * 2**30
    assert "predicted peak" in df.error.iloc[0]


@pytest.mark.slow
def test_emulated_memory_matches_measured(tmp_path):
    out = tmp_path / "r.csv"
    common = [
        "--gpus",
        "2",
        "--strategies",
        "partitioned,standard",
        "--alpha",
        "1e-4",
        "--beta",
        "1e9",
    ]
    assert _sweep(out, *common) == 0
    assert _sweep(out, *common, "--max-local-ranks", "1") == 0
    df = read_results(out)
    assert set(df["mode"]) == {"measured", "emulated"} and set(df.status) == {"ok"}
    for strategy, rows in df.groupby("strategy"):
        m = rows[rows["mode"] == "measured"].iloc[0]
        e = rows[rows["mode"] == "emulated"].iloc[0]
        assert (
            abs(e.host_peak_pss_max_rank - m.host_peak_pss_max_rank)
            <= 0.10 * m.host_peak_pss_max_rank
        ), strategy
        assert e.model_alpha_s == 1e-4 and e.model_beta_Bps == 1e9
        assert e.epoch_s_mean > 0 and pd.isna(m.model_alpha_s)


@pytest.mark.parametrize(
    "args, word",
    [
        (["--gpus", "0"], "--gpus"),
        (["--gpus", "a"], "--gpus"),
        (["--epochs", "-1"], "--epochs"),
        (["--strategies", "nope"], "--strategies"),
        (["--datasets", "metr-la:nodes=x"], "--datasets"),
        (["--datasets", "nope"], "--datasets"),
        (["--out", "/proc/nope/r.csv"], "--out"),
    ],
)
def test_bad_cli_values_exit_2_without_file(tmp_path, args, word):
    argv = ["--out", str(tmp_path / "r.csv"), *args] if "--out" not in args else args
    res = subprocess.run(
        [sys.executable, "-m", "bench.run", *argv], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert word in lines[-1] and "Traceback" not in res.stderr
    assert not (tmp_path / "r.csv").exists()


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert (
        bench_run.main(
            ["--gpus", "1,8,128", "--datasets", "metr-la", "--out", str(out), "--dry-run"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "emulated" in text and "measured" in text and "GiB" in text
    assert not out.exists()


def test_dataset_list_splitting():
    assert split_dataset_list("metr-la:nodes=5,steps=900,pems-bay") == [
        "metr-la:nodes=5,steps=900",
        "pems-bay",
    ]


@pytest.mark.slow
def test_cluster_mode_under_torchrun(tmp_path):
    out = tmp_path / "r.csv"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "bench.run",
        "--gpus",
        "2",
        *BASE,
        "--strategies",
        "index",
        "--out",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    df = read_results(out)
    assert len(df) == 1 and df.status.iloc[0] == "ok"
    assert df.world_size.iloc[0] == 2 and df.ranks_per_node.iloc[0] == 2
    assert df.host_peak_node.iloc[0] > df.host_peak_pss_max_rank.iloc[0]


@pytest.mark.slow
def test_standard_dask_sweep_records_gathered_bytes(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "r.csv"
    assert _sweep(out, "--gpus", "1,2", "--strategies", "standard-dask,gpu-index") == 0
    df = read_results(out)
    assert set(df.status) == {"ok"}, df.error.tolist()
    dask_rows = df[df.strategy == "standard-dask"]
    # B windows of (lags + horizon) steps x nodes x features float32, gathered every step
    assert (dask_rows.data_bytes_per_step == 64 * 24 * 12 * 2 * 4).all()
    assert (dask_rows.cluster_memory_bytes > 0).all()
    assert df[df.strategy == "gpu-index"].data_bytes_per_step.isna().all()
    assert _leftovers(tmp_path) == [], "leftover cluster or rank processes"


def test_dask_gather_projection_scales_beyond_the_real_ranks():
    from types import SimpleNamespace

    from bench.sweep.rows import _projected_gather

    reports = [
        {"summary": {"strategy": {"gather_seconds_per_step": s}}} for s in (0.1, 0.2, 0.15, 0.1)
    ]
    at = {p: _projected_gather(SimpleNamespace(world_size=p), reports) for p in (2, 4, 128)}
    assert at[4] == {"measured_s": 0.2, "projected_s": 0.2}  # the slowest real rank
    assert at[2]["projected_s"] == 0.2
    assert at[128]["projected_s"] == pytest.approx(0.2 * 32)
