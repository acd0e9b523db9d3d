"""Phase and step timers: statistics on injected durations, lap bookkeeping, sync hooks."""

import numpy as np
import pytest
import torch

from pgti_core.instruments import STEP_PARTS, PhaseTimer, StepTimes, device_sync


def test_summary_of_injected_steps():
    rng = np.random.default_rng(0)
    parts = rng.uniform(0.001, 0.1, size=(200, 3))
    times = StepTimes()
    for d, c, o in parts:
        times.record(d, c, o, samples=64)
    for s in (10.0, 12.0, 14.0):
        times.record_epoch(s)
    summ = times.summary()
    step = parts.sum(axis=1)
    assert summ.steps == 200 and summ.samples == 200 * 64
    assert summ.step_ms_p50 == pytest.approx(np.percentile(step, 50) * 1e3)
    assert summ.step_ms_p95 == pytest.approx(np.percentile(step, 95) * 1e3)
    assert summ.samples_per_s == pytest.approx(200 * 64 / step.sum())
    assert summ.data_wait_frac == pytest.approx(parts[:, 0].sum() / step.sum())
    fracs = summ.data_wait_frac + summ.compute_frac + summ.optimizer_frac
    assert fracs == pytest.approx(1.0)
    assert summ.epochs == 3
    assert summ.epoch_s_mean == pytest.approx(12.0)
    assert summ.epoch_s_std == pytest.approx(2.0)


def test_percentiles_pick_the_tail():
    times = StepTimes()
    for _ in range(99):
        times.record(0.0, 0.010, 0.0, samples=1)
    times.record(0.0, 1.0, 0.0, samples=1)
    summ = times.summary()
    assert summ.step_ms_p50 == pytest.approx(10.0)
    assert 10.0 <= summ.step_ms_p95 < 1000.0


def test_empty_summary_is_all_none():
    summ = StepTimes().summary()
    assert summ.steps == 0 and summ.epochs == 0
    assert summ.step_ms_p50 is None and summ.samples_per_s is None
    assert summ.data_wait_frac is None and summ.epoch_s_mean is None and summ.epoch_s_std is None


def test_single_epoch_has_zero_std():
    times = StepTimes()
    times.record_epoch(3.0)
    assert times.summary().epoch_s_std == 0.0


def test_laps_split_steps_and_sync_each_lap():
    calls = []
    times = StepTimes(sync=lambda: calls.append(1))
    times.start_epoch()
    for _ in range(3):
        times.lap("data")
        times.lap("compute")
        times.end_step(samples=8)
    epoch = times.end_epoch()
    summ = times.summary()
    assert summ.steps == 3 and summ.samples == 24 and summ.epochs == 1
    assert len(calls) == 1 + 3 * 3 + 1  # start, three laps per step, end
    assert summ.epoch_s_mean == epoch
    assert 0 < summ.samples / summ.samples_per_s <= epoch  # summed step time within the epoch
    assert summ.step_ms_p50 >= 0 and summ.data_wait_frac >= 0


def test_step_api_misuse():
    times = StepTimes()
    with pytest.raises(RuntimeError, match="start_epoch"):
        times.lap("data")
    with pytest.raises(RuntimeError, match="start_epoch"):
        times.end_epoch()
    times.start_epoch()
    with pytest.raises(ValueError, match="part"):
        times.lap("backward")
    with pytest.raises(ValueError, match="samples"):
        times.end_step(samples=0)
    with pytest.raises(ValueError, match="compute_s"):
        times.record(0.0, -1.0, 0.0, samples=1)
    with pytest.raises(ValueError, match="seconds"):
        times.record_epoch(float("nan"))
    assert STEP_PARTS == ("data", "compute", "optimizer")


def test_phase_timer_nests_and_repeats():
    calls = []
    timer = PhaseTimer(sync=lambda: calls.append(1))
    with timer.phase("train"):
        with timer.phase("val"):
            pass
    with timer.phase("train"):
        pass
    assert timer.counts == {"train": 2, "val": 1}
    assert timer.seconds["train"] >= timer.seconds["val"] >= 0
    assert len(calls) == 6
    timer.add("prep", 1.5)
    assert timer.seconds["prep"] == 1.5
    with pytest.raises(ValueError, match="name"):
        with timer.phase(""):
            pass
    with pytest.raises(ValueError, match="seconds"):
        timer.add("prep", -1.0)


def test_phase_timer_records_on_error():
    timer = PhaseTimer()
    with pytest.raises(KeyError):
        with timer.phase("train"):
            raise KeyError("boom")
    assert timer.counts == {"train": 1}


def test_device_sync_cpu_is_noop_and_cuda_is_bound():
    device_sync("cpu")()
    sync = device_sync(torch.device("cuda", 1))
    assert sync.func is torch.cuda.synchronize and sync.args == (torch.device("cuda", 1),)
