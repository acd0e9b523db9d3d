"""Synthetic profiles, the road-like graph and the streamed generator."""

import tracemalloc

import numpy as np
import pytest
from numpy.lib.format import open_memmap

from pgti_core.data.graph import knn_gaussian_graph, road_graph
from pgti_core.data.synthetic import (
    CHUNK_STEPS,
    PROFILES,
    fill_synthetic,
    generate,
    iter_chunks,
    synthetic_graph,
)

# name: (N, T, F, lags, horizon, batch, minutes per step), from PAPER.md's table
REAL_SHAPES = {
    "chickenpox": (20, 522, 1, 4, 4, 4, 7 * 1440),
    "windmill": (319, 17472, 1, 8, 8, 64, 60),
    "metr-la": (207, 34272, 2, 12, 12, 64, 5),
    "pems-bay": (325, 52116, 2, 12, 12, 64, 5),
    "pems-all-la": (2716, 105120, 2, 12, 12, 64, 5),
    "pems": (11160, 105120, 2, 12, 12, 64, 5),
}


@pytest.fixture(scope="module")
def traffic():
    """A METR-LA-like series of 60 sensors over 5 weeks (several chunks)."""
    return generate("metr-la", nodes=60, steps=10080, seed=3)


def test_profiles_have_the_real_shapes_and_defaults():
    assert set(PROFILES) == set(REAL_SHAPES)
    for name, want in REAL_SHAPES.items():
        p = PROFILES[name]
        got = (p.nodes, p.steps, p.features, p.lags, p.horizon, p.batch_size, p.step_minutes)
        assert got == want, name
        assert (p.window.lags, p.window.horizon) == (p.lags, p.horizon)


def test_same_seed_same_bytes_other_seed_differs():
    a = generate("metr-la", nodes=30, steps=CHUNK_STEPS + 500, seed=1)
    b = generate("metr-la", nodes=30, steps=CHUNK_STEPS + 500, seed=1)
    c = generate("metr-la", nodes=30, steps=CHUNK_STEPS + 500, seed=2)
    assert a.values.tobytes() == b.values.tobytes()
    assert np.array_equal(a.edge_index, b.edge_index)
    assert a.edge_weight.tobytes() == b.edge_weight.tobytes()
    assert not np.array_equal(a.values[..., 0], c.values[..., 0])
    assert not np.array_equal(a.edge_index, c.edge_index)


def test_chunks_stream_with_state_carried_over():
    """A series cut at a chunk boundary is a prefix of the longer one (AR and outages carry on)."""
    short = generate("pems-bay", nodes=25, steps=2 * CHUNK_STEPS, seed=5)
    long = generate("pems-bay", nodes=25, steps=3 * CHUNK_STEPS + 7, seed=5)
    assert short.values.tobytes() == long.values[: 2 * CHUNK_STEPS].tobytes()
    graph = synthetic_graph("pems-bay", 25, 5)
    blocks = list(iter_chunks("pems-bay", graph, 3 * CHUNK_STEPS + 7, seed=5))
    assert [t0 for t0, _ in blocks] == [0, CHUNK_STEPS, 2 * CHUNK_STEPS, 3 * CHUNK_STEPS]
    assert [len(b) for _, b in blocks] == [CHUNK_STEPS] * 3 + [7]
    # no jump at chunk boundaries: the AR noise is continuous (step changes stay ordinary)
    speed = long.values[..., 0].astype(np.float64)
    ok = (speed[1:] > 0) & (speed[:-1] > 0)
    jumps = np.abs(np.diff(speed, axis=0))
    at_boundary = jumps[CHUNK_STEPS - 1][ok[CHUNK_STEPS - 1]].mean()
    assert at_boundary < 3 * jumps[ok].mean()


def test_zero_share_outages_and_speed_range(traffic):
    speed = traffic.values[..., 0]
    zero = speed == 0
    assert 0.015 < zero.mean() < 0.06
    assert speed[~zero].min() >= 3.0 and speed.max() <= 75.0
    assert 50 < speed[~zero].mean() < 65
    runs = [len(r) for r in np.split(zero[:, 0], np.flatnonzero(np.diff(zero[:, 0])) + 1) if r[0]]
    runs += [len(r) for r in np.split(zero[:, 1], np.flatnonzero(np.diff(zero[:, 1])) + 1) if r[0]]
    assert min(runs) == 1 and max(runs) >= 6  # isolated zeros and outage runs
    assert np.isfinite(traffic.values).all()


def test_time_of_day_feature_and_timestamps(traffic):
    t = np.arange(traffic.num_steps)
    want = ((t * 5) % 1440) / 1440
    assert np.array_equal(
        traffic.values[..., 1], np.broadcast_to(want[:, None], (len(t), 60)).astype(np.float32)
    )
    assert traffic.values[..., 1].min() >= 0 and traffic.values[..., 1].max() < 1
    stamps = traffic.timestamps
    assert stamps[0] == np.datetime64("2012-03-01T00:00") and len(stamps) == traffic.num_steps
    from_stamps = (stamps - stamps.astype("datetime64[D]")) / np.timedelta64(1, "D")
    assert np.allclose(from_stamps, traffic.values[:, 0, 1], atol=1e-7)


def test_rush_hours_dip_on_weekdays_more_than_weekends(traffic):
    speed = np.where(traffic.values[..., 0] > 0, traffic.values[..., 0], np.nan)
    stamps = traffic.timestamps
    hour = (stamps.astype("datetime64[h]").astype(np.int64)) % 24
    weekday = (stamps.astype("datetime64[D]").astype(np.int64) + 3) % 7
    work, rest = weekday < 5, weekday >= 5
    night = np.nanmean(speed[(hour == 3) & work])
    morning = np.nanmean(speed[(hour == 8) & work])
    evening = np.nanmean(speed[(hour == 17) & work])
    weekend_morning = np.nanmean(speed[(hour == 8) & rest])
    assert morning < night - 8 and evening < night - 8
    assert weekend_morning > morning + 5


def test_noise_is_correlated_over_the_graph_and_in_time(traffic):
    speed = traffic.values[..., 0].astype(np.float64)
    ok = (speed[1:] > 0) & (speed[:-1] > 0)
    step = np.where(ok, np.diff(speed, axis=0), 0.0)
    step -= step.mean(axis=0)
    z = step / step.std(axis=0)
    corr = (z.T @ z) / len(z)
    src, dst = traffic.edge_index
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 60, (2, 400))
    far = a != b
    assert corr[src, dst].mean() > corr[a[far], b[far]].mean() + 0.1
    # AR(1) in time: a sensor's reading stays close to the previous one
    s = speed[:, 0]
    keep = (s[1:] > 0) & (s[:-1] > 0)
    assert np.corrcoef(s[1:][keep], s[:-1][keep])[0, 1] > 0.8


def test_single_feature_profiles_are_positive_cycles():
    pox = generate("chickenpox")
    assert pox.values.shape == (522, 20, 1)
    assert (pox.values > 0).all() and np.isfinite(pox.values).all()
    assert pox.timestamps[1] - pox.timestamps[0] == np.timedelta64(7, "D")
    wind = generate("windmill", nodes=40, steps=24 * 60)
    assert wind.values.shape == (1440, 40, 1) and (wind.values > 0).all()
    hourly = wind.values[:, :, 0].reshape(60, 24, 40).mean(axis=(0, 2))
    assert hourly.max() > 1.3 * hourly.min()  # a daily cycle


def test_generation_memory_is_bounded_by_the_chunk(tmp_path):
    """Peak Python-heap use writing into a memmap does not grow with the series length."""
    graph = synthetic_graph("pems", 300, 0)
    peaks = []
    for chunks in (2, 8):
        out = open_memmap(
            tmp_path / f"v{chunks}.npy", "w+", np.float32, (chunks * CHUNK_STEPS, 300, 2)
        )
        tracemalloc.start()
        fill_synthetic(out, "pems", graph, seed=0)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del out
    chunk_bytes = CHUNK_STEPS * 300 * 2 * 4
    assert peaks[1] < 1.25 * peaks[0] + (1 << 20)
    assert peaks[1] < 6 * chunk_bytes  # the 8-chunk series itself is 8 chunk_bytes


def test_graph_is_knn_gaussian_without_self_loops():
    g = road_graph(150, seed=4, k=10, threshold=0.1)
    src, dst = g.edge_index
    assert g.edge_index.dtype == np.int64 and g.edge_weight.dtype == np.float32
    assert (src != dst).all()
    assert src.min() >= 0 and max(src.max(), dst.max()) < 150
    assert (g.edge_weight > 0).all() and (g.edge_weight <= 1).all() and (g.edge_weight >= 0.1).all()
    assert len(np.unique(src * 150 + dst)) == len(src)
    d = np.linalg.norm(g.positions[:, None] - g.positions[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :10]
    assert (nearest[src] == dst[:, None]).any(axis=1).all()
    assert np.bincount(src, minlength=150).max() <= 10
    # weights fall with distance
    order = np.argsort(d[src, dst])
    assert (np.diff(g.edge_weight[order]) <= 1e-6).all()
    again = road_graph(150, seed=4, k=10, threshold=0.1)
    assert np.array_equal(again.edge_index, g.edge_index)
    assert np.array_equal(again.positions, g.positions)


def test_graph_threshold_zero_keeps_every_neighbour_and_scales():
    pos = np.random.default_rng(0).random((30, 2))
    edge_index, weight = knn_gaussian_graph(pos, k=100, threshold=0.0)
    assert edge_index.shape[1] == 30 * 29 and (weight > 0).all()
    big = synthetic_graph("pems")
    assert big.num_nodes == 11160
    assert 5 < big.edge_index.shape[1] / 11160 <= 10
    assert (big.edge_index[0] != big.edge_index[1]).all()
    with pytest.raises(ValueError, match="nodes"):
        road_graph(1)
