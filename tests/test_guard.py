"""The model-only probe (cached, reused, failures named), the guard's prediction against the node
peak the parent measured, and the runtime/model/data split of the rows."""

from __future__ import annotations

import subprocess

import pytest

from bench.perf.probe import ProbeError, ProbeSpec, model_probe, probe_graph
from bench.sweep import driver as bench_run
from bench.sweep import guard as guard_mod
from bench.sweep.plan import analytic_bytes, plan_points, predict_node_peak, transient_bytes
from bench.sweep.results import read_results
from pgti_core.data.datasets import parse_dataset_spec

SPEC = ProbeSpec("dcrnn-paper", nodes=30, edges=120, features=2, lags=12, horizon=12, batch=16)


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PGTI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_probe_graph_has_distinct_edges_without_self_loops():
    index, weight = probe_graph(30, 100)
    pairs = set(map(tuple, index.T.tolist()))
    assert index.shape == (2, 100) and len(pairs) == 100 and len(weight) == 100
    assert all(a != b for a, b in pairs)


@pytest.mark.slow
def test_probe_is_measured_once_then_reused(monkeypatch):
    first = model_probe(SPEC)
    assert 50 << 20 < first.host_runtime < first.host_model_peak
    assert first.host_model_peak >= (first.host_model_peak_sampled or 0)
    assert first.device_model_peak is None and first.spec["nodes"] == 30

    def no_subprocess(*a, **k):
        raise AssertionError("probe re-ran although cached")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert model_probe(SPEC) == first
    with pytest.raises(AssertionError, match="re-ran"):  # another shape is another probe
        model_probe(ProbeSpec(**{**first.spec, "batch": 8}))


def test_probe_failure_names_the_probe(monkeypatch):
    class Done:
        returncode, stderr = -9, ""

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(ProbeError, match="probe dcrnn-paper N=30") as info:
        model_probe(SPEC)
    assert info.value.status == "oom"
    Done.returncode, Done.stderr = 1, "Traceback...\nValueError: bad"
    with pytest.raises(ProbeError, match="ValueError: bad") as info:
        model_probe(SPEC)
    assert info.value.status == "failed"


def test_a_failed_probe_makes_the_point_oom_with_the_probe_named(tmp_path, monkeypatch):
    def oom(*a, **k):
        raise ProbeError("oom", "probe dcrnn-paper N=12: killed by SIGKILL")

    monkeypatch.setattr(guard_mod, "model_probe", oom)
    out = tmp_path / "r.csv"
    args = ["--datasets", "metr-la:nodes=12,steps=1200", "--gpus", "1", "--strategies", "index"]
    assert bench_run.main([*args, "--quiet", "--out", str(out)]) == 0
    row = read_results(out).iloc[0]
    assert row.status == "oom" and row.error.startswith("probe dcrnn-paper")


def _point(strategy, world, host_copy="auto"):
    ds = parse_dataset_spec("metr-la:nodes=100,steps=4000")
    (point,) = plan_points(
        [ds], [strategy], ["dcrnn-paper"], [world], repeats=1, epochs=1, batch_size=None,
        seed=0, max_steps=1, ranks_per_node=4, max_local_ranks=4, gpus_here=0,
        host_copy=host_copy,
    )  # fmt: skip
    return point, ds


def test_prediction_adds_runtime_model_and_data_and_shares_one_copy():
    point, ds = _point("index", 1)
    raw = ds.nbytes
    one = predict_node_peak(point, ds, runtime=100, model_peak=300, parent=7)
    assert 300 + 7 + raw <= one <= 300 + 7 + 1.02 * raw  # the three spans overlap a little
    private, _ = _point("index", 4, "private")
    shared, _ = _point("index", 4)
    assert shared.host_copy == "shared" and private.host_copy == "private"
    p_private = predict_node_peak(private, ds, runtime=100, model_peak=300)
    p_shared = predict_node_peak(shared, ds, runtime=100, model_peak=300)
    assert p_private - p_shared == pytest.approx(3 * (one - 307), rel=1e-9)
    std, _ = _point("standard", 1)  # the larger of build (+ normalized copy) and training
    windows = analytic_bytes(std, ds)["host"]
    assert predict_node_peak(std, ds, runtime=100, model_peak=101) == 100 + windows + (
        transient_bytes(std, ds)
    )
    assert predict_node_peak(std, ds, runtime=100, model_peak=10**9) == 10**9 + windows


@pytest.mark.slow
def test_guard_within_15_percent_and_split_adds_up(tmp_path):
    """Three sizes (one graph width, so one probe) x standard/index/partitioned, and a shared
    index at P = 2: the predicted node peak within +-15% of what the parent measured."""
    out = tmp_path / "r.csv"
    sizes = ",".join(f"metr-la:nodes=40,steps={t}" for t in (3000, 12000, 30000))
    base = ["--datasets", sizes, "--max-steps", "3", "--max-eval-steps", "2", "--quiet"]
    strategies = ["--strategies", "standard,index,partitioned"]
    assert bench_run.main([*base, *strategies, "--gpus", "1", "--out", str(out)]) == 0
    shared = ["--datasets", "metr-la:nodes=40,steps=3000", "--strategies", "index"]
    assert bench_run.main([*base[2:], *shared, "--gpus", "2", "--out", str(out)]) == 0
    df = read_results(out)
    assert len(df) == 10 and set(df.status) == {"ok"}, df[["status", "error"]]
    assert (
        df.host_data_peak + df.host_model_peak == df.host_peak_pss_max_rank
    ).all()  # the split adds up
    assert (df.host_runtime_peak < df.host_model_peak).all()
    error = df.predicted_peak_node / df.host_peak_node - 1
    assert error.abs().max() <= 0.15, df[["dataset", "strategy", "world_size"]].assign(err=error)
    std = df[df.strategy == "standard"].sort_values("steps")
    assert std.host_data_peak.is_monotonic_increasing  # the data part grows with the series
    assert list(df[df.world_size == 2].host_copy) == ["shared"]
