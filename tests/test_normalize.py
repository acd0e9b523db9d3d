"""Train-window normalization statistics, computed without windows, against materialized windows."""

import numpy as np
import pytest
import torch

from pgti_core.data import normalize
from pgti_core.data.normalize import Normalizer, step_weights, train_window_stats
from pgti_core.data.synthetic import generate
from pgti_core.data.windows import WindowSpec, split_starts

SPEC = WindowSpec(12, 12)


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    return generate("metr-la", nodes=15, steps=2500, seed=2).values


def _materialized(values: np.ndarray, starts: np.ndarray, lags: int, channel: int = 0):
    windows = np.stack([values[s : s + lags, :, channel] for s in starts]).astype(np.float64)
    return windows.mean(), windows.std()


def _starts_cases(num_steps: int) -> dict[str, np.ndarray]:
    train = split_starts(num_steps, SPEC)["train"]
    rng = np.random.default_rng(0)
    return {
        "contiguous": train,
        "strided": train[::7],
        "random": np.sort(rng.choice(train, 300, replace=False)),
        "two blocks": np.concatenate([train[:100], train[-250:]]),
        "unsorted with repeats": rng.choice(train, 200, replace=True),
    }


@pytest.mark.parametrize(
    "case", ["contiguous", "strided", "random", "two blocks", "unsorted with repeats"]
)
def test_stats_equal_those_of_the_materialized_windows(values, case):
    starts = _starts_cases(len(values))[case]
    mean, std = _materialized(values, starts, SPEC.lags)
    norm = train_window_stats(values, SPEC, starts)
    assert norm.mean == pytest.approx(mean, rel=1e-6)
    assert norm.std == pytest.approx(std, rel=1e-6)
    assert norm.channel == 0


def test_chunked_tensor_and_memmap_paths_agree(values, monkeypatch, tmp_path):
    starts = _starts_cases(len(values))["random"]
    whole = train_window_stats(values, SPEC, starts)
    monkeypatch.setattr(normalize, "_CHUNK_BYTES", 15 * 2 * 4 * 37)  # 37 steps per chunk
    chunked = train_window_stats(values, SPEC, starts)
    as_tensor = train_window_stats(torch.from_numpy(np.array(values)), SPEC, starts)
    np.save(tmp_path / "v.npy", values)
    mapped = train_window_stats(np.load(tmp_path / "v.npy", mmap_mode="r"), SPEC, starts)
    for other in (chunked, as_tensor, mapped):
        assert other.mean == pytest.approx(whole.mean, rel=1e-9)
        assert other.std == pytest.approx(whole.std, rel=1e-9)


def test_other_channel_and_other_lags(values):
    spec = WindowSpec(5, 3)
    starts = split_starts(len(values), spec)["train"][::3]
    mean, std = _materialized(values, starts, spec.lags, channel=1)
    norm = train_window_stats(values, spec, starts, channel=1)
    assert (norm.mean, norm.std) == (pytest.approx(mean, rel=1e-6), pytest.approx(std, rel=1e-6))
    assert norm.channel == 1


def test_constant_series_and_empty_split():
    flat = np.full((40, 3, 2), 7.0, dtype=np.float32)
    norm = train_window_stats(flat, SPEC, np.arange(5))
    assert norm.mean == pytest.approx(7.0) and norm.std == 1.0
    with pytest.raises(ValueError, match="train split"):
        train_window_stats(flat, SPEC, np.array([], dtype=np.int64))


def test_step_weights_count_the_windows_containing_each_step():
    rng = np.random.default_rng(3)
    starts = rng.choice(80, 25, replace=True)
    spec = WindowSpec(6, 2)
    weights = step_weights(100, spec, starts)
    brute = np.array([np.sum((starts <= t) & (t < starts + spec.lags)) for t in range(100)])
    assert weights.dtype == np.int64 and np.array_equal(weights, brute)
    assert weights.sum() == len(starts) * spec.lags
    contiguous = step_weights(30, spec, np.arange(10))
    assert contiguous.tolist() == [1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 5, 4, 3, 2, 1] + [0] * 15


@pytest.mark.parametrize("channel", [0, 1])
def test_apply_then_inverse_round_trips(values, channel):
    norm = Normalizer(mean=54.3, std=12.7, channel=channel)
    block = np.array(values[:64])
    out = norm.apply_(block)
    assert out is block
    other = 1 - channel
    assert np.array_equal(block[..., other], values[:64, :, other])  # other channel untouched
    expected = (values[:64, :, channel] - np.float32(54.3)) / np.float32(12.7)
    assert np.array_equal(block[..., channel], expected)
    back = norm.inverse(torch.from_numpy(block[..., channel]))
    assert torch.allclose(
        back, torch.from_numpy(np.array(values[:64, :, channel])), rtol=1e-6, atol=1e-4
    )
    assert norm.as_dict() == {"mean": 54.3, "std": 12.7, "channel": channel}


def test_normalized_training_windows_have_zero_mean_unit_std(values):
    starts = split_starts(len(values), SPEC)["train"]
    norm = train_window_stats(values, SPEC, starts)
    scaled = norm.apply_(np.array(values))
    mean, std = _materialized(scaled, starts, SPEC.lags)
    assert abs(mean) < 1e-5 and std == pytest.approx(1.0, rel=1e-5)
