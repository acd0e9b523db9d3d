"""Every strategy cuts the same windows, visits what its sampler promises, and keeps what it says."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import random_series

from pgti_core.batching import STRATEGIES, WindowSpec, build_strategy, split_starts
from pgti_core.data.normalize import train_window_stats
from pgti_core.data.series import Series

SPEC = WindowSpec(lags=12, horizon=12)


def _build(name, series, spec=SPEC, split="train", **kw):
    splits = split_starts(series.num_steps, spec)
    norm = train_window_stats(series.values, spec, splits["train"])
    kw.setdefault("batch_size", 16)
    return build_strategy(name, series, spec, splits[split], norm, **kw)


def _reference(series: Series, spec: WindowSpec, starts: np.ndarray, strat) -> tuple:
    """Windows cut one by one from an independently normalized copy (the per-sample path)."""
    v = np.array(series.values, dtype=np.float32)
    ch = v[..., 0]
    ch -= np.float32(strat.normalizer.mean)
    ch /= np.float32(strat.normalizer.std)
    x = np.stack([v[s : s + spec.lags] for s in starts])
    y = np.stack([v[s + spec.lags : s + spec.length] for s in starts])
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_starts_of_any_layout_give_the_same_batch(series, split, name):
    """Reversed, strided, read-only and int32 starts are the same windows as a plain array."""
    strat = _build(name, series, split=split)
    picks = np.ascontiguousarray(strat.starts[1:10])
    want = strat.batch(picks)
    want = (want[0].clone(), want[1].clone())
    frozen = picks.copy()
    frozen.flags.writeable = False
    every = np.arange(len(picks))
    layouts = {
        "reversed": (picks[::-1], every[::-1]),
        "strided": (strat.starts[1:10:2], every[::2]),
        "read-only": (frozen, every),
        "int32": (picks.astype(np.int32), every),
    }
    for layout, (starts, order) in layouts.items():
        x, y = strat.batch(starts)
        i = torch.from_numpy(order.copy())
        assert torch.equal(x, want[0][i]) and torch.equal(y, want[1][i]), layout


@pytest.mark.parametrize("split", ["train", "val"])
def test_all_pairs_bit_identical(series, split):
    strategies = {n: _build(n, series, split=split) for n in STRATEGIES}
    starts = strategies["standard"].starts
    rng = np.random.default_rng(1)
    picks = rng.choice(starts, size=min(9, len(starts)), replace=False)
    ref = _reference(series, SPEC, picks, strategies["standard"])
    for a, b in itertools.combinations(strategies, 2):
        xa, ya = strategies[a].batch(picks)
        xb, yb = strategies[b].batch(picks)
        assert torch.equal(xa, xb) and torch.equal(ya, yb), (a, b)
    for name, strat in strategies.items():
        x, y = strat.batch(picks)
        assert x.shape == (len(picks), SPEC.lags, series.num_nodes, series.num_features)
        assert y.shape == (len(picks), SPEC.horizon, series.num_nodes, series.num_features)
        assert torch.equal(x, ref[0]) and torch.equal(y, ref[1]), name


def test_bit_identical_from_memmap_and_tensor(tmp_path, series):
    path = tmp_path / "v.npy"
    np.save(path, series.values)
    mm = Series(np.load(path, mmap_mode="r"), series.edge_index, series.edge_weight)
    tt = Series(torch.from_numpy(np.array(series.values)), series.edge_index, series.edge_weight)
    picks = np.array([0, 5, 17, 40])
    ref = _build("standard", series).batch(picks)
    for s in (mm, tt):
        for name in STRATEGIES:
            x, y = _build(name, s).batch(picks)
            assert torch.equal(x, ref[0]) and torch.equal(y, ref[1]), name


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("name", ["standard", "index", "gpu-index"])
def test_sharded_strategies_follow_distributed_sampler(series, name, world):
    ranks = [_build(name, series, rank=r, world_size=world, seed=7) for r in range(world)]
    for epoch in (0, 1):
        seen = Counter()
        for strat in ranks:
            strat.set_epoch(epoch)
            sampler = torch.utils.data.DistributedSampler(
                range(len(strat.starts)), num_replicas=world, rank=strat.rank, seed=7
            )
            sampler.set_epoch(epoch)
            expected = strat.starts[list(sampler)]
            visited = np.concatenate(strat.plan())
            assert np.array_equal(visited, expected)
            seen.update(visited.tolist())
        starts = ranks[0].starts
        # every start visited; padding repeats at most world - 1 of them once more
        assert set(seen) == set(starts.tolist())
        assert sum(seen.values()) - len(starts) < world
    ranks[0].set_epoch(0)
    first = np.concatenate(ranks[0].plan())
    ranks[0].set_epoch(1)
    assert not np.array_equal(first, np.concatenate(ranks[0].plan()))


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_partitioned_visits_every_train_start_once(series, world):
    ranks = [_build("partitioned", series, rank=r, world_size=world) for r in range(world)]
    visited = np.concatenate([np.concatenate(s.plan()) for s in ranks])
    assert np.array_equal(np.sort(visited), ranks[0].starts)
    for strat in ranks:
        for run in strat.plan():
            assert np.all(np.diff(run) == 1)  # each batch is one contiguous slice
    orders = []
    for epoch in (0, 1):
        ranks[0].set_epoch(epoch)
        orders.append([int(r[0]) for r in ranks[0].plan()])
    assert sorted(orders[0]) == sorted(orders[1])
    if len(orders[0]) > 2:
        assert orders[0] != orders[1]


def test_eval_shards_are_exact(series):
    ranks = [
        _build("index", series, split="val", rank=r, world_size=3, shuffle=False) for r in range(3)
    ]
    visited = np.concatenate([np.concatenate(s.plan()) for s in ranks])
    assert np.array_equal(visited, ranks[0].starts)


def test_drop_last(series):
    strat = _build("index", series, batch_size=16, drop_last=True)
    assert all(len(b) == 16 for b in strat.plan())
    assert len(strat) == len(strat.starts) // 16


def test_resident_bytes_shape_of_costs():
    s = random_series(steps=2000, nodes=10)
    raw = s.nbytes
    std = _build("standard", s).resident_bytes()["host"]
    idx = _build("index", s).resident_bytes()["host"]
    train = split_starts(s.num_steps, SPEC)["train"]
    # standard keeps (lags + horizon) steps per train window; index one copy of the steps they span
    assert std == len(train) * SPEC.length * s.num_nodes * s.num_features * 4
    assert 0.9 * 0.7 * raw < idx <= raw
    assert std / idx > 0.9 * SPEC.length
    for world in (2, 4, 8):
        parts = [_build("partitioned", s, rank=r, world_size=world) for r in range(world)]
        halo = (SPEC.length - 1) * s.num_nodes * s.num_features * 4
        for p in parts:
            assert p.resident_bytes()["host"] <= raw / world + halo
        assert sum(p.resident_bytes()["host"] for p in parts) <= idx + world * halo


def test_describe_reports_fields(series):
    d = _build("partitioned", series, rank=1, world_size=2).describe()
    assert d["strategy"] == "partitioned"
    assert d["resident_host_bytes"] > 0 and d["resident_device_bytes"] == 0
    assert d["local_samples"] > 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"world_size": 0}, "world_size"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_name_the_field(series, kwargs, field):
    with pytest.raises(ValueError, match=field):
        _build("index", series, **kwargs)


def test_bad_data_is_rejected():
    s = random_series(steps=100)
    with pytest.raises(ValueError, match="lags"):
        split_starts(20, SPEC)
    with pytest.raises(ValueError, match="empty"):
        split_starts(24, SPEC)
    bad = np.array(s.values)
    bad[50, 1, 0] = np.nan
    nan_series = Series(bad, s.edge_index, s.edge_weight)
    for name in STRATEGIES:
        with pytest.raises(ValueError, match="NaN"):
            _build(name, nan_series)
    with pytest.raises(ValueError, match="float"):
        Series(np.zeros((10, 3, 1), dtype=np.int32), s.edge_index[:, :0], s.edge_weight[:0])
    with pytest.raises(ValueError, match="edge_index"):
        Series(np.zeros((10, 3, 1), dtype=np.float32), s.edge_index, s.edge_weight)
    with pytest.raises(ValueError, match="strategy"):
        build_strategy("nope", s, SPEC, np.arange(3), None)


@pytest.mark.parametrize(
    "profile",
    [
        "chickenpox",
        "windmill:nodes=12,steps=400",
        "metr-la:nodes=9,steps=600",
        "pems-bay:nodes=7,steps=600",
    ],
)
def test_profiles_bit_identical_across_strategies(profile, tmp_path):
    from pgti_core.data.datasets import load_dataset, parse_dataset_spec

    dspec = parse_dataset_spec(profile)
    series = load_dataset(dspec, seed=0, cache_dir=tmp_path)
    spec = dspec.window
    built = {n: _build(n, series, spec=spec, batch_size=5) for n in STRATEGIES}
    picks = built["standard"].plan()[0]
    ref = built["standard"].batch(picks)
    for name, strat in built.items():
        x, y = strat.batch(picks)
        assert torch.equal(x, ref[0]) and torch.equal(y, ref[1]), (profile, name)
