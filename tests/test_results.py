"""The results CSV schema and its append/read/resume functions (bench.sweep.results)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.sweep.results import (
    COLUMNS,
    HEADER,
    append_row,
    check_writable,
    finished_keys,
    format_row,
    new_run_id,
    read_results,
    utc_now,
)

# DESIGN.md § Results row, verbatim.
DESIGN_COLUMNS = """run_id timestamp_utc git_sha pgti_version repeat mode status error strategy model
dataset nodes steps features edges lags horizon dtype world_size ranks_per_node backend device
batch_per_rank global_batch epochs prep_s train_s total_s epoch_s_mean epoch_s_std step_ms_p50
step_ms_p95 samples_per_s data_wait_frac host_peak_pss_max_rank host_peak_rss_max_rank host_peak_node
host_resident_model_bytes device_peak_allocated device_peak_reserved device_peak_nvml best_val_mae
final_train_mae model_alpha_s model_beta_Bps""".split()
HARNESS_COLUMNS = """point_key oversubscribed analytic_host_bytes analytic_device_bytes host_peak_uss_max_rank
host_baseline_pss predicted_peak_node data_bytes_per_step cluster_memory_bytes model_gather_s
steps_per_rank best_val_rmse best_val_mape test_mae notes""".split()

OK_ROW = {
    "run_id": "r1",
    "point_key": "k-ok",
    "repeat": 1,
    "mode": "emulated",
    "status": "ok",
    "strategy": "index",
    "dataset": "metr-la:nodes=50,steps=2000",
    "world_size": np.int64(128),
    "oversubscribed": np.bool_(True),
    "total_s": np.float32(1.5),
    "epoch_s_mean": 0.1 + 0.2,
    "host_peak_pss_max_rank": 3 * 2**40,
    "model_alpha_s": 2.5e-6,
    "notes": 'emulated: 2 real ranks of 128; "quoted", with commas',
}
FAILED_ROW = {
    "run_id": "r1",
    "point_key": "k-oom",
    "repeat": 0,
    "mode": "measured",
    "status": "oom",
    "error": "MemoryError: line one\nline two, with | pipe",
    "strategy": "standard",
    "world_size": 8,
}


def test_schema_has_design_and_harness_columns_once():
    assert len(COLUMNS) == len(set(COLUMNS))
    assert set(DESIGN_COLUMNS) <= set(COLUMNS)
    assert set(HARNESS_COLUMNS) <= set(COLUMNS)
    # DESIGN's order within its own columns is kept.
    assert [c for c in COLUMNS if c in DESIGN_COLUMNS] == DESIGN_COLUMNS


def test_append_read_roundtrip_with_types(tmp_path):
    path = tmp_path / "deep" / "er" / "sweep.csv"
    append_row(path, OK_ROW)
    append_row(path, FAILED_ROW)
    assert path.read_text().count(HEADER) == 1
    df = read_results(path)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 2
    assert str(df["world_size"].dtype) == "Int64"
    assert str(df["host_peak_pss_max_rank"].dtype) == "Int64"
    assert df["total_s"].dtype == np.float64
    assert str(df["oversubscribed"].dtype) == "boolean"
    ok, bad = df.iloc[0], df.iloc[1]
    assert ok["world_size"] == 128 and ok["host_peak_pss_max_rank"] == 3 * 2**40
    assert ok["total_s"] == 1.5 and ok["epoch_s_mean"] == 0.1 + 0.2  # exact float round trip
    assert bool(ok["oversubscribed"]) is True
    assert ok["notes"] == OK_ROW["notes"] and ok["dataset"] == OK_ROW["dataset"]
    assert bad["error"] == FAILED_ROW["error"]
    assert pd.isna(bad["total_s"]) and pd.isna(bad["oversubscribed"]) and pd.isna(bad["edges"])
    assert bad["git_sha"] == ""


def test_append_rejects_unknown_key_and_bad_values(tmp_path):
    path = tmp_path / "r.csv"
    with pytest.raises(ValueError, match="speedup"):
        append_row(path, {"status": "ok", "speedup": 2.0})
    with pytest.raises(ValueError, match="status"):
        append_row(path, {"status": "done"})
    with pytest.raises(ValueError, match="world_size"):
        append_row(path, {"world_size": "eight"})
    with pytest.raises(ValueError, match="nodes"):
        append_row(path, {"nodes": 2.5})
    with pytest.raises(ValueError, match="oversubscribed"):
        append_row(path, {"oversubscribed": "yes"})
    assert not path.exists()


def test_append_refuses_a_file_with_another_header(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("run_id,status\nr0,ok\n")
    with pytest.raises(ValueError, match="header"):
        append_row(path, OK_ROW)
    with pytest.raises(ValueError, match="header"):
        check_writable(path)
    assert path.read_text() == "run_id,status\nr0,ok\n"


def test_append_after_unterminated_line_keeps_own_row_intact(tmp_path):
    path = tmp_path / "r.csv"
    append_row(path, OK_ROW)
    with open(path, "a") as fh:
        fh.write("r9,2025")  # a foreign, cut-off line
    append_row(path, FAILED_ROW)
    df = read_results(path)
    assert df["point_key"].iloc[-1] == "k-oom" and df["error"].iloc[-1] == FAILED_ROW["error"]


WRITER = """
import sys
from bench.sweep.results import append_row
path, who, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    append_row(path, {"point_key": f"w{who}-{i}", "status": "ok", "repeat": i,
                      "notes": f"w{who}-{i}:" + "x" * 6000})
"""


def test_concurrent_appends_from_four_processes_stay_intact(tmp_path):
    path, n = tmp_path / "shared.csv", 60
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(w), str(n)], env=env, cwd=root
        )
        for w in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    text = path.read_text()
    assert text.count(HEADER) == 1 and text.startswith(HEADER)
    df = read_results(path)
    assert len(df) == 4 * n
    assert set(df["point_key"]) == {f"w{w}-{i}" for w in range(4) for i in range(n)}
    assert (df["notes"] == df["point_key"] + ":" + "x" * 6000).all()
    assert (df["repeat"] == df["point_key"].str.split("-").str[1].astype(int)).all()


def test_finished_keys_filters_by_status(tmp_path):
    path = tmp_path / "r.csv"
    assert finished_keys(path) == set()
    append_row(path, OK_ROW)
    append_row(path, FAILED_ROW)
    append_row(path, {**FAILED_ROW, "point_key": "k-fail", "status": "failed"})
    append_row(path, {"status": "ok"})  # no key: never counts
    assert finished_keys(path) == {"k-ok", "k-oom", "k-fail"}
    assert finished_keys(path, statuses=("ok", "oom")) == {"k-ok", "k-oom"}


def test_read_results_tolerates_older_schema_and_extra_columns(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("run_id,status,world_size,total_s,gone_column\nr0,ok,4,2.5,x\nr0,failed,,,\n")
    new = tmp_path / "new.csv"
    append_row(new, OK_ROW)
    df = read_results([old, new])
    assert len(df) == 3
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS) and df.columns[-1] == "gone_column"
    assert df["world_size"].tolist()[:1] == [4] and pd.isna(df["world_size"].iloc[1])
    assert pd.isna(df["epoch_s_mean"].iloc[0]) and df["epoch_s_mean"].iloc[2] == 0.1 + 0.2
    assert df["strategy"].tolist() == ["", "", "index"]


def test_read_results_rejects_a_file_that_is_not_results(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="status"):
        read_results(bad)


def test_check_writable_creates_nothing_and_names_the_problem(tmp_path):
    target = tmp_path / "a" / "b" / "sweep.csv"
    check_writable(target)
    assert not (tmp_path / "a").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        check_writable(blocker / "sweep.csv")
    with pytest.raises(ValueError, match="is a directory"):
        check_writable(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_writable_rejects_a_read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="not writable"):
            check_writable(ro / "sub" / "sweep.csv")
    finally:
        ro.chmod(0o755)


def test_run_id_and_timestamp():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert datetime.fromisoformat(utc_now()).utcoffset().total_seconds() == 0


def test_resume_trusts_only_complete_well_formed_rows(tmp_path):
    """A row cut after ``status=ok`` (the issue's "0 to run") or otherwise damaged is reported,
    its point is not done, and the file is only read."""
    path = tmp_path / "r.csv"
    append_row(path, OK_ROW)
    append_row(path, {**OK_ROW, "point_key": "k-cut"})
    text = path.read_text()
    cut = text[: text.rindex("k-cut")] + 'k-cut,1,emulated,ok,"",'  # killed mid-write
    path.write_text(cut)
    damaged: list[str] = []
    assert finished_keys(path, damaged=damaged) == {"k-ok"}
    assert len(damaged) == 1 and "row 2" in damaged[0] and "cut off" in damaged[0]
    assert path.read_text() == cut  # never rewritten in place
    # the next append starts on a fresh line; the cut row stays damaged, the new one counts
    append_row(path, {**OK_ROW, "point_key": "k-new"})
    damaged.clear()
    assert finished_keys(path, damaged=damaged) == {"k-ok", "k-new"}
    assert len(damaged) == 1 and "fields" in damaged[0]


@pytest.mark.parametrize(
    "column, value, why",
    [
        ("world_size", "eight", "not a number"),
        ("repeat", "1.5", "not an integer"),
        ("oversubscribed", "maybe", "not a bool"),
        ("status", "done", "unknown"),
        ("point_key", "", "no point_key"),
        ("total_s", "", "without total_s"),
    ],
)
def test_a_row_with_an_ill_typed_cell_is_damaged(tmp_path, column, value, why):
    path = tmp_path / "r.csv"
    append_row(path, OK_ROW)
    cells = next(csv.reader(io.StringIO(format_row(OK_ROW))))
    cells[COLUMNS.index(column)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    with open(path, "a") as f:
        f.write(buf.getvalue())
    damaged: list[str] = []
    finished_keys(path, damaged=damaged)
    assert len(damaged) == 1 and why in damaged[0], damaged
