"""The device paths give today's batches bit for bit: index with the next batch prefetched
(staging slots, side stream on CUDA) and gpu-index gathering into one reused buffer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_series

from pgti_core.batching import WindowSpec, build_strategy, split_starts
from pgti_core.batching.prefetch import Prefetcher
from pgti_core.data.normalize import train_window_stats
from pgti_core.models.registry import build_model
from pgti_core.train.loop import fit

SPEC = WindowSpec(4, 3)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _make(name: str, series, device="cpu", batch_size=16, **kwargs):
    starts = split_starts(series.num_steps, SPEC)["train"]
    norm = train_window_stats(series.values, SPEC, starts)
    return build_strategy(
        name, series, SPEC, starts, norm, batch_size=batch_size, device=device, **kwargs
    )


def _assert_same(strategy, reference) -> int:
    """Every batch of ``strategy.batches`` equals the reference's, checked as it arrives."""
    plan = reference.plan()
    n = 0
    for (starts, (x, y)), expected in zip(strategy.batches(plan), plan, strict=True):
        assert np.array_equal(starts, expected)
        xr, yr = reference.batch(starts)
        assert torch.equal(x.cpu(), xr) and torch.equal(y.cpu(), yr)
        n += 1
    return n


def test_index_prefetch_yields_the_same_batches_on_cpu():
    series = random_series(steps=300)
    n = _assert_same(_make("index", series, prefetch=True), _make("index", series))
    assert n == len(_make("index", series).plan()) > 2  # the last, partial batch included


def test_prefetched_batches_do_not_alias_the_staging_slots():
    series = random_series(steps=300)
    reference = _make("index", series)
    plan = reference.plan()
    prefetch = Prefetcher(reference.stage, reference.unpack, reference.stage_shape(), "cpu")
    held = list(prefetch(plan))
    assert len(held) == len(plan)  # every batch kept while the two slots were refilled
    for starts, (x, y) in held:
        xr, yr = reference.batch(starts)
        assert torch.equal(x, xr) and torch.equal(y, yr)


def test_prefetcher_keeps_one_batch_ahead_in_two_slots_gathered_in_place():
    calls, targets = [], []

    def stage(starts, out):
        calls.append(int(starts[0]))
        targets.append(out.data_ptr())
        block = out[: len(starts)]
        block[:, :3].fill_(float(starts[0]))
        block[:, 3:].fill_(float(starts[0]) + 1)
        return block

    def unpack(block):
        x, y = block.split((3, 3), dim=1)
        return x, y

    prefetch = Prefetcher(stage, unpack, (2, 6), "cpu")
    it = prefetch([np.array([i, i + 1]) for i in range(0, 10, 2)])
    starts, (x, _) = next(it)
    assert int(starts[0]) == 0 and calls == [0, 2]  # batch 1 was gathered before 0 was handed over
    assert torch.equal(x, torch.zeros(2, 3))
    rest = list(it)
    assert [int(s[0]) for s, _ in rest] == [2, 4, 6, 8] and calls == [0, 2, 4, 6, 8]
    assert all(torch.equal(y, torch.full((2, 3), s[0] + 1.0)) for s, (_, y) in rest)
    slots = [s.buffer.data_ptr() for s in prefetch._slots]
    assert targets == [slots[i % 2] for i in range(5)]  # gathered straight into the slots


def test_gpu_index_reused_buffer_gives_the_same_batches_without_new_allocations():
    series = random_series(steps=300)
    reuse = _make("gpu-index", series, reuse_buffer=True)
    _assert_same(reuse, _make("index", series))
    plan = reuse.plan()
    ptrs = {reuse.batch(s)[0].data_ptr() for s in plan}
    assert len(ptrs) == 1  # every batch lands in the one buffer
    assert reuse.resident_bytes()["host"] > _make("gpu-index", series).resident_bytes()["host"]


def test_fit_with_prefetch_learns_exactly_what_fit_without_does():
    series = random_series(steps=300)
    losses = []
    for extra in ({}, {"prefetch": True}):
        train = _make("index", series, **extra)
        val = _make("index", series, shuffle=False)
        torch.manual_seed(0)
        model = build_model(
            "dcrnn-paper",
            num_nodes=series.num_nodes,
            num_features=series.num_features,
            edge_index=series.edge_index,
            edge_weight=series.edge_weight,
            lags=SPEC.lags,
            horizon=SPEC.horizon,
        )
        result = fit(model, train, val, train.normalizer, epochs=1, max_steps=5)
        losses.append(result.epochs[0].losses)
    assert losses[0] == losses[1] and len(losses[0]) == 5


@pytest.mark.gpu
@needs_cuda
def test_index_prefetch_on_cuda_is_bit_identical_to_host_batches():
    series = random_series(steps=300)
    prefetch = _make("index", series, device="cuda", prefetch=True)
    assert _assert_same(prefetch, _make("index", series)) > 2


@pytest.mark.gpu
@needs_cuda
def test_gpu_index_reuse_on_cuda_is_bit_identical_to_host_batches():
    series = random_series(steps=300)
    assert _assert_same(_make("gpu-index", series, device="cuda", reuse_buffer=True),
                        _make("index", series)) > 2  # fmt: skip
