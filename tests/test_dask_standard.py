"""standard-dask cuts the same windows as standard, samples as promised, shares one persisted copy
between ranks on a cluster, and leaves no workers behind."""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import torch
from conftest import random_series

pytest.importorskip("distributed")

from distributed import futures_of  # noqa: E402

from pgti_core.batching import WindowSpec, split_starts  # noqa: E402
from pgti_core.batching.dask_cluster import cluster_memory_bytes, connect, dask_client  # noqa: E402
from pgti_core.batching.dask_standard import (  # noqa: E402
    DaskStandardStrategy,
    dataset_name,
    gather_model,
)
from pgti_core.batching.registry import strategy_class  # noqa: E402
from pgti_core.data.normalize import train_window_stats  # noqa: E402
from pgti_core.data.series import Series  # noqa: E402

SPEC = WindowSpec(lags=12, horizon=12)


@pytest.fixture(scope="module")
def client():
    with dask_client(2) as c:
        yield c


def _build(name, series, split="train", **kw):
    splits = split_starts(series.num_steps, SPEC)
    norm = train_window_stats(series.values, SPEC, splits["train"])
    kw.setdefault("batch_size", 16)
    cls = DaskStandardStrategy if name == "standard-dask" else strategy_class(name)
    return cls(series, SPEC, splits[split], norm, **kw)


def _new_processes(before: set[int]) -> list[psutil.Process]:
    """Descendants not in ``before``, other than multiprocessing's process-lifetime resource tracker."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def test_missing_dask_names_the_extra(monkeypatch):
    for mod in ("pgti_core.batching.dask_standard", "pgti_core.batching.dask_cluster"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ValueError, match=r"pip install 'pgti\[dask\]'"):
        strategy_class("standard-dask")


def test_registered_lazily():
    assert strategy_class("standard-dask") is DaskStandardStrategy


@pytest.mark.parametrize("split", ["train", "val"])
def test_batches_bit_identical_to_standard(client, series, split):
    std = _build("standard", series, split=split)
    dsk = _build("standard-dask", series, split=split, client=client, chunk_samples=20)
    assert dsk._x.npartitions > 1  # batches straddle chunks
    starts = std.starts
    rng = np.random.default_rng(3)
    batches = [
        rng.choice(starts, size=min(11, len(starts)), replace=False),  # unsorted
        starts[5:21][::-1],  # one contiguous run, reversed
        np.r_[starts[-1], starts[0], starts[-1]],  # a repeat, as sampler padding makes
        *std.plan()[:2],
    ]
    for picks in batches:
        xs, ys = std.batch(picks)
        xd, yd = dsk.batch(picks)
        assert xd.dtype == torch.float32 and xd.shape == xs.shape and yd.shape == ys.shape
        assert torch.equal(xs, xd) and torch.equal(ys, yd)


@pytest.mark.parametrize("world", [1, 2])
def test_sampler_matches_standard(client, series, world):
    for shuffle in (True, False):
        for rank in range(world):
            kw = {"rank": rank, "world_size": world, "seed": 5, "shuffle": shuffle}
            std = _build("standard", series, **kw)
            dsk = _build("standard-dask", series, client=client, **kw)
            for epoch in (0, 1):
                std.set_epoch(epoch)
                dsk.set_epoch(epoch)
                assert len(dsk.plan()) == len(std.plan())
                for a, b in zip(std.plan(), dsk.plan(), strict=True):
                    assert np.array_equal(a, b)
                assert np.array_equal(dsk.local_starts(), std.local_starts())


@pytest.mark.parametrize("world", [1, 3])
def test_contiguous_runs_cover_every_start_once(client, series, world):
    ranks = [
        _build("standard-dask", series, client=client, contiguous=True, rank=r, world_size=world)
        for r in range(world)
    ]
    visited = np.concatenate([np.concatenate(s.plan()) for s in ranks])
    assert np.array_equal(np.sort(visited), ranks[0].starts)
    for strat in ranks:
        for run in strat.plan():
            assert np.all(np.diff(run) == 1)
        part = _build("partitioned", series, rank=strat.rank, world_size=world)
        for a, b in zip(part.plan(), strat.plan(), strict=True):
            assert np.array_equal(a, b)
    run = ranks[-1].plan()[0]
    ref = _build("standard", series).batch(run)
    got = ranks[-1].batch(run)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])


def test_gather_stats_and_describe(client):
    s = random_series(steps=300, nodes=5, features=3, seed=2)
    b = 16
    dsk = _build("standard-dask", s, client=client, batch_size=b, drop_last=True)
    per_window = SPEC.length * s.num_nodes * s.num_features * 4
    plan = dsk.plan()[:3]
    for starts in plan:
        dsk.batch(starts)
    stats = dsk.gather_stats()
    assert stats["gather_steps"] == 3
    assert stats["step_bytes"] == [b * per_window] * 3
    assert stats["data_bytes_per_step"] == b * per_window
    assert stats["gather_bytes_total"] == 3 * b * per_window
    assert all(t > 0 for t in stats["step_seconds"])
    d = dsk.describe()
    assert d["strategy"] == "standard-dask"
    assert d["resident_host_bytes"] == 0 and d["resident_device_bytes"] == 0
    assert d["data_bytes_per_step"] == b * per_window
    assert d["cluster_data_bytes"] == len(dsk.starts) * per_window
    assert d["cluster_memory_bytes"] > d["cluster_data_bytes"]
    assert cluster_memory_bytes(client) > 0
    model = gather_model(stats)
    assert model["method"] == "mean" and model["latency_s"] == 0.0
    assert model["bandwidth_Bps"] == pytest.approx(
        sum(stats["step_bytes"]) / sum(stats["step_seconds"])
    )


def test_gather_model_fits_latency_and_bandwidth():
    nbytes = [1e6, 2e6, 4e6, 8e6]
    stats = {"step_bytes": nbytes, "step_seconds": [0.01 + n / 2e9 for n in nbytes]}
    model = gather_model(stats)
    assert model["method"] == "lstsq" and model["steps"] == 4
    assert model["latency_s"] == pytest.approx(0.01)
    assert model["bandwidth_Bps"] == pytest.approx(2e9)
    noisy = {"step_bytes": nbytes, "step_seconds": [0.04, 0.03, 0.02, 0.01]}
    assert gather_model(noisy)["method"] == "mean"
    with pytest.raises(ValueError, match="stats"):
        gather_model({"step_bytes": [], "step_seconds": []})


@pytest.mark.parametrize("fail", [False, True])
def test_context_leaves_no_workers(fail):
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def body():
        with dask_client(2) as c:
            assert len(c.scheduler_info()["workers"]) == 2
            assert len(_new_processes(before)) >= 2  # worker processes (and their nannies)
            if fail:
                raise RuntimeError("boom")
        return c

    if fail:
        with pytest.raises(RuntimeError, match="boom"):
            body()
    else:
        assert body().status == "closed"
    assert _new_processes(before) == []


def test_owned_cluster_closed_by_close(series):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    dsk = _build("standard-dask", series, dask_workers=1)
    x, _ = dsk.batch(dsk.starts[:4])
    assert x.shape[0] == 4 and _new_processes(before)
    dsk.close()
    assert dsk.client.status == "closed"
    assert _new_processes(before) == []
    with pytest.raises(ValueError, match="closed"):
        dsk.batch(dsk.starts[:4])


def test_bad_input_is_rejected(client, series):
    with pytest.raises(ValueError, match="chunk_samples"):
        _build("standard-dask", series, client=client, chunk_samples=0)
    bad = np.array(series.values)
    bad[50, 1, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        _build("standard-dask", Series(bad, series.edge_index, series.edge_weight), client=client)


@pytest.mark.parametrize("by", ["file", "address"])
def test_joining_client_leaves_the_cluster_running(client, tmp_path, by):
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"address": client.scheduler.address}))
    with dask_client(scheduler=path if by == "file" else client.scheduler.address) as other:
        assert len(other.scheduler_info()["workers"]) == 2
    assert other.status == "closed"
    assert len(client.scheduler_info()["workers"]) == 2  # only the client was closed
    with pytest.raises(ValueError, match="scheduler"):
        connect(tmp_path / "missing.json")


def _keys(strategy: DaskStandardStrategy) -> set:
    return {f.key for f in futures_of([strategy._x, strategy._y])}


def _stored_bytes(client) -> int:
    """Bytes of every key held in the cluster, as the scheduler counts them."""
    return int(sum(client.nbytes(summary=True).values()))


def test_ranks_share_one_persisted_copy(client):
    s = random_series(seed=7)  # data no other test publishes
    per_window = SPEC.length * s.num_nodes * s.num_features * 4
    other = connect(client.scheduler.address)  # rank 1 joins as its own process would
    try:
        r0 = _build("standard-dask", s, client=client, rank=0, world_size=2, chunk_samples=40)
        stored = _stored_bytes(client)
        r1 = _build("standard-dask", s, client=other, rank=1, world_size=2, chunk_samples=40)
        assert r0.built_here and not r1.built_here
        assert r0.dataset == r1.dataset and r0.dataset in client.list_datasets()
        assert _keys(r0) == _keys(r1)
        one_copy = len(r0.starts) * per_window
        assert r0.describe()["cluster_data_bytes"] == one_copy
        assert r1.describe()["cluster_data_bytes"] == one_copy
        assert _stored_bytes(client) <= stored  # rank 1 added nothing to the cluster
        std = _build("standard", s)
        r0.close()  # the builder leaves first; rank 1's copy stays published and usable
        assert r0.dataset is None and r1.dataset in client.list_datasets()
        for picks in (r1.plan()[0], std.starts[::7][::-1]):
            xs, ys = std.batch(picks)
            xd, yd = r1.batch(picks)
            assert torch.equal(xs, xd) and torch.equal(ys, yd)
        name = r1.dataset
        r1.close()  # the last sharer unpublishes
        assert name not in client.list_datasets()
    finally:
        other.close()


def test_dataset_name_tells_different_windows_apart(series):
    splits = split_starts(series.num_steps, SPEC)
    norm = train_window_stats(series.values, SPEC, splits["train"])
    base = dataset_name(series, SPEC, splits["train"], norm, 256)
    assert base == dataset_name(series, SPEC, splits["train"].copy(), norm, 256)
    shifted = np.array(series.values)
    shifted[-1] += 1  # same name and shape, other readings
    twin = Series(shifted, series.edge_index, series.edge_weight, name=series.name)
    others = [
        dataset_name(series, SPEC, splits["val"], norm, 256),
        dataset_name(series, WindowSpec(lags=12, horizon=6), splits["train"], norm, 256),
        dataset_name(series, SPEC, splits["train"], type(norm)(norm.mean, 2 * norm.std), 256),
        dataset_name(series, SPEC, splits["train"], norm, 64),
        dataset_name(twin, SPEC, splits["train"], norm, 256),
    ]
    assert len({base, *others}) == 6
    with pytest.raises(ValueError, match="shared_name"):
        _build("standard-dask", series, client=None, shared_name="")


def test_concurrent_ranks_build_once(client):
    s = random_series(seed=8)
    clients = [connect(client.scheduler.address) for _ in range(2)]
    start = threading.Barrier(2)

    def rank(r: int) -> DaskStandardStrategy:
        start.wait()
        return _build("standard-dask", s, client=clients[r], rank=r, world_size=2)

    try:
        with ThreadPoolExecutor(2) as pool:
            ranks = list(pool.map(rank, range(2)))
        assert sorted(r.built_here for r in ranks) == [False, True]
        assert _keys(ranks[0]) == _keys(ranks[1])
        for r in ranks:
            r.close()
        assert ranks[0].dataset is None
    finally:
        for c in clients:
            c.close()
