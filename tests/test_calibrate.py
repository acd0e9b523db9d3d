"""All-reduce calibration: size parsing, the ring fit, a real 2-rank gloo run and the CLI."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from bench.perf import calibrate as cal
from bench.perf.project import CommModel, allreduce_s, load_calibration, save_calibration


def test_parse_sizes_binary_units():
    assert cal.parse_sizes("8,1k,64K, 1M,16m,1G") == [8, 1024, 65536, 2**20, 16 * 2**20, 2**30]


@pytest.mark.parametrize("text", ["", "8,", "8,x", "0,1k", "-8,1k", "1.5k,2k", "8,8", "1k"])
def test_parse_sizes_rejects(text):
    with pytest.raises(ValueError, match="sizes"):
        cal.parse_sizes(text)


@pytest.mark.parametrize("world", [2, 3, 8])
def test_fit_recovers_the_ring_model(world):
    truth = CommModel(3e-5, 2.5e9, "given", "ring")
    sizes = [8, 1024, 65536, 2**20, 16 * 2**20]
    times = [allreduce_s(truth, world, n) for n in sizes]
    alpha, beta = cal.fit_ring(world, sizes, times)
    assert alpha == pytest.approx(truth.alpha_s, rel=1e-6)
    assert beta == pytest.approx(truth.beta_Bps, rel=1e-6)


def test_fit_clamps_a_negative_intercept_to_zero_latency():
    sizes = [1000, 2000, 4000]
    times = [0.5e-6, 2.0e-6, 4.0e-6]  # a line through these would start below zero
    alpha, beta = cal.fit_ring(2, sizes, times)
    assert alpha == 0.0
    assert 0 < beta < math.inf


def test_fit_refuses_times_that_do_not_grow_with_size():
    with pytest.raises(ValueError, match="larger size"):
        cal.fit_ring(2, [8, 1024, 4096], [3e-4, 2e-4, 1e-4])


@pytest.mark.slow
def test_calibrate_two_gloo_ranks(tmp_path):
    sizes = [8, 64 * 1024, 4 * 2**20]
    record = cal.calibrate(2, sizes, iters=25, backend="gloo", warmup=2)
    assert record["backend"] == "gloo" and record["device"] == "cpu"
    assert record["world_size"] == 2 and record["sizes"] == sizes
    assert record["algorithm"] == "ring"
    assert len(record["times_s"]) == 3 and all(t > 0 for t in record["times_s"])
    assert 0 < record["alpha_s"] < 1.0
    assert 0 < record["beta_Bps"] < math.inf
    for key in ("host", "torch_version", "timestamp_utc", "iters", "oversubscribed"):
        assert key in record
    # The saved model reproduces the fitted minima: exact conversions, and a factor wide enough
    # for a loaded shared host; the medians can only be slower.
    model = load_calibration(save_calibration(record, tmp_path / "calibration.json"))
    assert (model.alpha_s, model.beta_Bps) == cal.fit_ring(2, sizes, record["times_s"])
    assert all(m <= med for m, med in zip(record["times_s"], record["times_median_s"], strict=True))
    for n, measured in zip(sizes, record["times_s"], strict=True):
        assert measured / 5 < allreduce_s(model, 2, n) < measured * 5


def test_calibrate_rejects_bad_arguments_before_spawning():
    with pytest.raises(ValueError, match="ranks"):
        cal.calibrate(1, [8, 1024], iters=3)
    with pytest.raises(ValueError, match="iters"):
        cal.calibrate(2, [8, 1024], iters=0)
    with pytest.raises(ValueError, match="backend"):
        cal.calibrate(2, [8, 1024], iters=3, backend="mpi")
    with pytest.raises(ValueError, match="sizes"):
        cal.calibrate(2, [1, 3], iters=3)  # both round up to one float32


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="nccl is usable here")
def test_nccl_without_gpus_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cal.main(["--backend", "nccl"])
    assert exc.value.code == 2
    assert "nccl" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--ranks", "1"], ["--sizes", "8,zz"], ["--sizes", "64k"], ["--iters", "0"]]
)
def test_cli_usage_errors_exit_2(argv, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cal.main([*argv, "--out", str(tmp_path / "c.json")])
    assert exc.value.code == 2
    assert not (tmp_path / "c.json").exists()


def test_cli_writes_the_record(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(ranks, sizes, iters, backend, warmup):
        seen.update(ranks=ranks, sizes=sizes, iters=iters, backend=backend, warmup=warmup)
        return {"alpha_s": 1e-4, "beta_Bps": 1e9, "backend": "gloo", "oversubscribed": False}

    monkeypatch.setattr(cal, "calibrate", fake)
    out = tmp_path / "res" / "calibration.json"
    assert cal.main(["--out", str(out), "--ranks", "3", "--sizes", "8,1k", "--iters", "7"]) == 0
    assert seen == {"ranks": 3, "sizes": [8, 1024], "iters": 7, "backend": "gloo", "warmup": 3}
    assert json.loads(out.read_text())["alpha_s"] == 1e-4
    assert "100.0 us" in capsys.readouterr().out


def test_calibrate_runs_with_defaults_only():
    # bench.run calls calibrate(ranks=2) when an emulated point needs a model and none exists.
    bound = inspect.signature(cal.calibrate).bind(ranks=2)
    bound.apply_defaults()
    assert bound.arguments["sizes"] == (8, 1024, 65536, 2**20, 16 * 2**20)
    assert bound.arguments["iters"] >= 5
