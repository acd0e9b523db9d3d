"""The alpha-beta all-reduce model, the epoch projection and calibration files."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.perf.project import (
    CommModel,
    allreduce_s,
    gather_s,
    load_calibration,
    project_epoch,
    ring_allreduce_s,
    save_calibration,
    tree_allreduce_s,
)

MODEL = CommModel(alpha_s=1e-5, beta_Bps=1e9, source="given")


def test_ring_and_tree_follow_the_published_formulas():
    # Ring at P = 4: 2 * 3 alpha + 2 * 3/4 * n / beta.
    assert ring_allreduce_s(MODEL, 4, 10**6) == pytest.approx(6e-5 + 1.5e-3)
    # Binomial reduce + broadcast at P = 5: ceil(log2 5) = 3 rounds each way.
    assert tree_allreduce_s(MODEL, 5, 10**6) == pytest.approx(6 * (1e-5 + 1e-3))


@pytest.mark.parametrize("nbytes", [0, 600, 10**9])
def test_one_rank_costs_nothing(nbytes):
    for algorithm in ("auto", "ring", "tree"):
        model = CommModel(1e-3, 1e6, "given", algorithm)
        assert allreduce_s(model, 1, nbytes) == 0.0


def test_auto_picks_tree_for_small_and_ring_for_large_messages():
    p = 128
    small, large = 600, 10**9
    assert allreduce_s(MODEL, p, small) == tree_allreduce_s(MODEL, p, small)
    assert tree_allreduce_s(MODEL, p, small) < ring_allreduce_s(MODEL, p, small)
    assert allreduce_s(MODEL, p, large) == ring_allreduce_s(MODEL, p, large)
    assert ring_allreduce_s(MODEL, p, large) < tree_allreduce_s(MODEL, p, large)


def test_algorithm_forces_the_formula():
    ring = CommModel(MODEL.alpha_s, MODEL.beta_Bps, "given", "ring")
    assert allreduce_s(ring, 128, 600) == ring_allreduce_s(MODEL, 128, 600)
    tree = CommModel(MODEL.alpha_s, MODEL.beta_Bps, "given", "tree")
    assert allreduce_s(tree, 128, 10**9) == tree_allreduce_s(MODEL, 128, 10**9)


@given(
    alpha=st.floats(0, 1e-2),
    beta=st.floats(1e3, 1e12),
    nbytes=st.integers(0, 2**34),
    world=st.integers(1, 4096),
)
def test_cost_grows_with_world_and_size(alpha, beta, nbytes, world):
    model = CommModel(alpha, beta, "given")
    t = allreduce_s(model, world, nbytes)
    assert t >= 0
    assert allreduce_s(model, world + 1, nbytes) >= t * (1 - 1e-12)
    assert allreduce_s(model, world, nbytes + 1024) >= t * (1 - 1e-12)
    # At two ranks the ring is never worse, so a ring calibration at P = 2 is reproduced.
    assert allreduce_s(model, 2, nbytes) == pytest.approx(ring_allreduce_s(model, 2, nbytes))


def test_gather_is_latency_plus_transfer():
    assert gather_s(1e-3, 1e9, 262 * 2**20) == pytest.approx(1e-3 + 262 * 2**20 / 1e9)
    with pytest.raises(ValueError, match="bandwidth_Bps"):
        gather_s(1e-3, 0.0, 10)
    with pytest.raises(ValueError, match="latency_s"):
        gather_s(-1.0, 1e9, 10)


def test_project_epoch_adds_up():
    out = project_epoch(
        steps_per_rank=100, data_s=0.01, compute_s=0.05, optim_s=0.002, grad_bytes=600,
        world_size=64, model=MODEL, fixed_s=3.0, gather_s_per_step=0.1,
    )  # fmt: skip
    per_step_comm = allreduce_s(MODEL, 64, 600)
    assert out["allreduce_s"] == pytest.approx(100 * per_step_comm)
    assert out["gather_s"] == pytest.approx(10.0)
    assert out["comm_s"] == pytest.approx(out["allreduce_s"] + out["gather_s"])
    parts = ("data_s", "compute_s", "optim_s", "comm_s", "fixed_s")
    assert out["epoch_s"] == pytest.approx(sum(out[k] for k in parts))
    assert out["epoch_s"] == pytest.approx(100 * (0.01 + 0.05 + 0.002 + per_step_comm + 0.1) + 3)
    assert (out["model_alpha_s"], out["model_beta_Bps"]) == (MODEL.alpha_s, MODEL.beta_Bps)
    assert out["world_size"] == 64 and out["steps_per_rank"] == 100


def test_project_epoch_without_peers_has_no_allreduce():
    out = project_epoch(10, 0.1, 0.2, 0.0, 10**6, 1, MODEL)
    assert out["comm_s"] == 0.0
    assert out["epoch_s"] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"steps_per_rank": -1}, "steps_per_rank"),
        ({"steps_per_rank": 2.5}, "steps_per_rank"),
        ({"data_s": math.nan}, "data_s"),
        ({"compute_s": -0.1}, "compute_s"),
        ({"optim_s": None}, "optim_s"),
        ({"grad_bytes": -4}, "grad_bytes"),
        ({"world_size": 0}, "world_size"),
        ({"fixed_s": math.inf}, "fixed_s"),
        ({"gather_s_per_step": -1.0}, "gather_s_per_step"),
    ],
)
def test_project_epoch_rejects_bad_input_naming_the_field(change, field):
    kwargs = dict(
        steps_per_rank=10, data_s=0.1, compute_s=0.1, optim_s=0.0, grad_bytes=600,
        world_size=8, model=MODEL,
    )  # fmt: skip
    with pytest.raises(ValueError, match=field):
        project_epoch(**{**kwargs, **change})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha_s": -1.0}, "alpha_s"),
        ({"beta_Bps": 0.0}, "beta_Bps"),
        ({"beta_Bps": math.inf}, "beta_Bps"),
        ({"algorithm": "bcube"}, "algorithm"),
    ],
)
def test_comm_model_validates(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CommModel(**{"alpha_s": 1e-5, "beta_Bps": 1e9, "source": "given", **kwargs})


def test_calibration_round_trip(tmp_path):
    record = {"alpha_s": 2e-4, "beta_Bps": 1.2e9, "algorithm": "ring", "world_size": 2}
    path = save_calibration(record, tmp_path / "sub" / "calibration.json")
    model = load_calibration(path)
    assert model == CommModel(2e-4, 1.2e9, f"calibrated:{path}", "ring")
    assert json.loads(path.read_text())["world_size"] == 2
    assert not list(path.parent.glob("*.tmp"))


def test_calibration_without_algorithm_defaults_to_auto(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"alpha_s": 1e-5, "beta_Bps": 5e9}))
    assert load_calibration(path).algorithm == "auto"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"alpha_s": 1e-5}', "beta_Bps"),
        ('{"beta_Bps": 1e9}', "alpha_s"),
        ('{"alpha_s": "fast", "beta_Bps": 1e9}', "alpha_s"),
        ('{"alpha_s": 1e-5, "beta_Bps": -3}', "beta_Bps"),
        ('{"alpha_s": true, "beta_Bps": 1e9}', "alpha_s"),
        ('{"alpha_s": 1e-5, "beta_Bps": 1e9, "algorithm": "x"}', "algorithm"),
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_calibration_is_a_clear_error(tmp_path, text, match):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_calibration(path)


def test_missing_calibration_says_how_to_make_one(tmp_path):
    with pytest.raises(ValueError, match="bench.calibrate"):
        load_calibration(tmp_path / "absent.json")


def test_save_refuses_a_record_that_would_not_load(tmp_path):
    with pytest.raises(ValueError, match="beta_Bps"):
        save_calibration({"alpha_s": 1e-5}, tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()
