"""Synthetic spatiotemporal series with the shapes of the PGT-I datasets (Ockerman et al., SC'25).

Traffic profiles mimic loop-detector speed (mph): per-sensor free-flow level, daily and weekly
cycles, morning/evening rush-hour dips (weaker at weekends), noise that is AR(1) in time and
diffused over the sensor graph, a few % zero readings (missing: isolated and outage runs), and the
time-of-day feature. Other profiles are a positive cyclic signal with the same correlated noise.
Generation streams in chunks of :data:`CHUNK_STEPS` steps, each with its own RNG derived from
``(seed, chunk index)``, so the same seed gives the same bytes and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pgti_core.data.graph import SensorGraph, road_graph
from pgti_core.data.series import Series
from pgti_core.data.windows import WindowSpec

GENERATOR_VERSION = 1
CHUNK_STEPS = 1024  # part of the generator's definition: changing it changes the bytes
_MINUTES_PER_DAY = 1440
_DIFFUSION_STEPS = 3
_PARAM_STREAM, _CHUNK_STREAM = 0x70617261, 0x6368756E  # RNG stream tags: params, chunks
_DENSE_FRACTION = 1 / 4  # propagate with a dense matmul when the adjacency is at least this full


@dataclass(frozen=True)
class Profile:
    """A named dataset shape and the defaults that go with it.

    Args:
        name: profile name (``metr-la``, ...).
        nodes: sensors N of the real dataset.
        steps: time steps T of the real dataset.
        traffic: speed + time-of-day (F = 2) if True, else one positive signal (F = 1).
        lags: default input window.
        horizon: default output window.
        batch_size: default batch per rank (the paper's setting).
        step_minutes: minutes between steps (5 for traffic).
        start: ISO date-time of step 0.
        k: nearest neighbours per sensor in the synthetic graph.
        threshold: Gaussian-kernel weight cut-off of the synthetic graph.
        cycle_days: period of the main cycle of a non-traffic signal, in days.
        ar: AR(1) coefficient of the noise per step.
    """

    name: str
    nodes: int
    steps: int
    traffic: bool
    lags: int = 12
    horizon: int = 12
    batch_size: int = 64
    step_minutes: int = 5
    start: str = "2012-03-01T00:00"
    k: int = 10
    threshold: float = 0.1
    cycle_days: float = 1.0
    ar: float = 0.95

    def __post_init__(self) -> None:
        if self.traffic and _MINUTES_PER_DAY % self.step_minutes:
            raise ValueError(
                f"step_minutes: must divide a day for traffic, got {self.step_minutes}"
            )

    @property
    def features(self) -> int:
        return 2 if self.traffic else 1

    @property
    def window(self) -> WindowSpec:
        return WindowSpec(self.lags, self.horizon)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "chickenpox", 20, 522, traffic=False, lags=4, horizon=4, batch_size=4,
            step_minutes=7 * _MINUTES_PER_DAY, start="2005-01-03T00:00", k=6,
            cycle_days=365.25, ar=0.7,
        ),
        Profile(
            "windmill", 319, 17472, traffic=False, lags=8, horizon=8, step_minutes=60,
            start="2020-01-01T00:00", k=318, threshold=0.0, ar=0.9,
        ),
        Profile("metr-la", 207, 34272, traffic=True, start="2012-03-01T00:00"),
        Profile("pems-bay", 325, 52116, traffic=True, start="2017-01-01T00:00"),
        Profile("pems-all-la", 2716, 105120, traffic=True, start="2018-01-01T00:00"),
        Profile("pems", 11160, 105120, traffic=True, start="2018-01-01T00:00"),
    )
}  # fmt: skip


def get_profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (a :class:`Profile` passes through)."""
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"profile: unknown {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def synthetic_graph(profile: str | Profile, nodes: int | None = None, seed: int = 0) -> SensorGraph:
    """The road-like sensor graph of a profile (``nodes`` overrides its sensor count)."""
    p = get_profile(profile)
    return road_graph(nodes or p.nodes, seed=seed, k=p.k, threshold=p.threshold)


def synthetic_timestamps(profile: str | Profile, steps: int) -> np.ndarray:
    """``[steps]`` datetime64[m] stamps starting at the profile's start, ``step_minutes`` apart."""
    p = get_profile(profile)
    return np.datetime64(p.start, "m") + np.arange(steps, dtype=np.int64) * p.step_minutes


class _Propagator:
    """Row-normalized weighted adjacency P applied to ``x[N, C]``: each node's neighbour average.

    A dense matmul when the graph is at least 1/4 full, a sparse ``torch.sparse.mm`` otherwise
    (its per-row sums do not depend on the thread count). Sensors without out-edges average over
    themselves.
    """

    def __init__(self, graph: SensorGraph) -> None:
        n = graph.num_nodes
        src, dst = graph.edge_index
        w = graph.edge_weight.astype(np.float64)
        lonely = np.flatnonzero(np.bincount(src, minlength=n) == 0)
        src, dst = np.concatenate([src, lonely]), np.concatenate([dst, lonely])
        w = np.concatenate([w, np.ones(len(lonely))])
        w = (w / np.bincount(src, weights=w, minlength=n)[src]).astype(np.float32)
        if len(src) >= _DENSE_FRACTION * n * n:
            self.matrix = np.zeros((n, n), dtype=np.float32)
            self.matrix[src, dst] = w
            self.sparse = None
        else:
            index = torch.from_numpy(np.stack([src, dst]))
            self.sparse = torch.sparse_coo_tensor(
                index, torch.from_numpy(w), (n, n), check_invariants=True
            ).coalesce()

    def diffuse(self, x: np.ndarray) -> np.ndarray:
        """Lazy random-walk smoothing ``x <- (x + P x) / 2`` a few times: spatially correlated noise."""
        for _ in range(_DIFFUSION_STEPS):
            if self.sparse is None:
                px = self.matrix @ x
            else:
                px = torch.sparse.mm(self.sparse, torch.from_numpy(x)).numpy()
            x += px
            x *= np.float32(0.5)
        return x


def _unit(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() or 1.0)


class _Generator:
    """State of one streamed generation: per-sensor parameters, AR noise and outage carry-over."""

    def __init__(self, profile: Profile, graph: SensorGraph, seed: int) -> None:
        self.p, self.seed, n = profile, seed, graph.num_nodes
        self.prop = _Propagator(graph)
        rng = np.random.default_rng(np.random.SeedSequence([seed, _PARAM_STREAM]))
        probe = self.prop.diffuse(rng.standard_normal((n, 64), dtype=np.float32))
        self.noise_scale = np.float32(np.sqrt(1 - profile.ar**2) / probe.std())
        self.noise = probe[:, 0] / probe.std()  # stationary start of the AR(1) noise
        u = np.stack(
            [_unit(c) for c in self.prop.diffuse(rng.standard_normal((n, 4), dtype=np.float32)).T]
        )
        self.outage_left = np.zeros(n, dtype=np.int64)
        self.day_offset = int(
            (np.datetime64(profile.start, "m") - np.datetime64(profile.start, "D")).astype(int)
        )
        if profile.traffic:
            self.base = rng.uniform(55.0, 68.0, n).astype(np.float32)
            self.sigma = rng.uniform(2.0, 4.0, n).astype(np.float32)
            sens = np.clip(0.35 + 0.15 * u[:2], 0.02, 0.7)
            hour = (np.arange(0, _MINUTES_PER_DAY, profile.step_minutes) / 60.0)[:, None]
            morning = np.exp(-0.5 * np.square((hour - (8.0 + 0.4 * u[2])) / 1.0))
            evening = np.exp(-0.5 * np.square((hour - (17.5 + 0.5 * u[3])) / 1.4))
            self.dip = (sens[0] * morning + sens[1] * evening).astype(np.float32)  # [slot, N]
        else:
            self.base = rng.uniform(5.0, 50.0, n).astype(np.float32)
            self.sigma = np.full(n, 0.25, dtype=np.float32)
            self.amp = rng.uniform(0.3, 0.8, n).astype(np.float32)
            self.phase = (0.05 * u[0]).astype(np.float32)

    def chunk(self, index: int, length: int) -> np.ndarray:
        """Steps ``[index * CHUNK_STEPS, + length)`` as ``[length, N, F]`` float32."""
        p, n = self.p, len(self.base)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _CHUNK_STREAM, index]))
        noise = self.prop.diffuse(rng.standard_normal((n, length), dtype=np.float32)).T.copy()
        noise *= self.noise_scale
        ar, prev = np.float32(p.ar), self.noise
        for t in range(length):
            noise[t] += ar * prev
            prev = noise[t]
        self.noise = noise[-1].copy()
        minutes = (index * CHUNK_STEPS + np.arange(length, dtype=np.int64)) * p.step_minutes
        minutes += self.day_offset
        if not p.traffic:
            cycle = minutes / (p.cycle_days * _MINUTES_PER_DAY)
            wave = np.cos(2 * np.pi * (cycle[:, None] - self.phase)).astype(np.float32)
            return (self.base * np.exp(self.amp * wave + self.sigma * noise))[:, :, None]
        block = np.empty((length, n, 2), dtype=np.float32)
        block[:, :, 0] = self._speed(minutes, noise)
        block[:, :, 0][self._missing(rng, length)] = 0.0
        block[:, :, 1] = ((minutes % _MINUTES_PER_DAY) / _MINUTES_PER_DAY)[:, None]
        return block

    def _speed(self, minutes: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Free-flow level minus rush-hour dips (scaled by day of week), plus noise, in mph."""
        day = np.datetime64(self.p.start, "D") + minutes // _MINUTES_PER_DAY
        weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        scale = np.array([1.0, 1.0, 1.0, 1.0, 1.1, 0.35, 0.25], dtype=np.float32)[weekday]
        tod = (minutes % _MINUTES_PER_DAY) / _MINUTES_PER_DAY
        dip = self.dip[(minutes % _MINUTES_PER_DAY) // self.p.step_minutes]
        dip *= scale[:, None]
        speed = 1.0 - dip
        speed *= self.base
        speed += (2.0 * np.cos(2 * np.pi * (tod - 0.125))).astype(np.float32)[:, None]
        dip += 1.0
        dip *= self.sigma
        dip *= noise
        speed += dip
        return np.clip(speed, 3.0, 75.0, out=speed)

    def _missing(self, rng: np.random.Generator, length: int) -> np.ndarray:
        """Mask of zero readings: ~1% isolated plus ~2% in outages of 30 min to 4 h."""
        n = len(self.base)
        mask = rng.random((length, n), dtype=np.float32) < 0.01
        count = rng.poisson(0.02 / 27.0 * length, n)
        node = np.repeat(np.arange(n), count)
        start = rng.integers(0, length, len(node))
        end = start + rng.integers(6, 49, len(node))
        edges = np.zeros((length + 1, n), dtype=np.int16)
        np.add.at(edges, (start, node), 1)
        np.add.at(edges, (np.minimum(end, length), node), -1)
        mask |= np.cumsum(edges[:-1], axis=0, dtype=np.int16) > 0
        mask |= np.arange(length)[:, None] < self.outage_left
        left = np.maximum(self.outage_left - length, 0)
        np.maximum.at(left, node, np.maximum(end - length, 0))
        self.outage_left = left
        return mask


def iter_chunks(
    profile: str | Profile, graph: SensorGraph, steps: int, seed: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t0, block[C, N, F])`` for consecutive chunks of a generated series.

    Args:
        profile (str | Profile): the profile (its signal kind, cycles and start time).
        graph (SensorGraph): the sensor graph (sets N and the noise correlation).
        steps (int): series length T.
        seed (int, default 0): the same seed and graph give the same bytes.
    """
    gen = _Generator(get_profile(profile), graph, seed)
    for index, t0 in enumerate(range(0, steps, CHUNK_STEPS)):
        yield t0, gen.chunk(index, min(CHUNK_STEPS, steps - t0))


def fill_synthetic(out, profile: str | Profile, graph: SensorGraph, seed: int = 0) -> None:
    """Write a generated series into ``out[T, N, F]`` one chunk at a time, in step order.

    ``out`` is an array, a memmap or a :class:`~pgti_core.data.cache.ValuesWriter`.
    """
    p = get_profile(profile)
    steps, nodes, features = out.shape
    if nodes != graph.num_nodes or features != p.features:
        raise ValueError(
            f"out: expected shape [T, {graph.num_nodes}, {p.features}] for profile {p.name!r}, "
            f"got {tuple(out.shape)}"
        )
    for t0, block in iter_chunks(p, graph, steps, seed):
        out[t0 : t0 + len(block)] = block


def generate(
    profile: str | Profile, nodes: int | None = None, steps: int | None = None, seed: int = 0
) -> Series:
    """Generate a synthetic series in memory (use :func:`pgti_core.data.load_dataset` for big ones).

    Args:
        profile (str | Profile): profile name or object (see :data:`PROFILES`).
        nodes (int, optional): sensor count override.
        steps (int, optional): length override.
        seed (int, default 0): graph and signal seed.
    """
    p = get_profile(profile)
    nodes, steps = nodes or p.nodes, steps or p.steps
    graph = synthetic_graph(p, nodes, seed)
    values = np.empty((steps, nodes, p.features), dtype=np.float32)
    fill_synthetic(values, p, graph, seed)
    return Series(
        values,
        graph.edge_index,
        graph.edge_weight,
        name=p.name,
        timestamps=synthetic_timestamps(p, steps),
        meta=synthetic_meta(p, nodes, steps, seed),
    )


def synthetic_meta(profile: str | Profile, nodes: int, steps: int, seed: int) -> dict:
    """Provenance of a generated series (stored in cache metadata and ``Series.meta``)."""
    p = get_profile(profile)
    overrides = {k: v for k, v in (("nodes", nodes), ("steps", steps)) if v != getattr(p, k)}
    return {
        "source": "synthetic",
        "profile": p.name,
        "seed": seed,
        "overrides": overrides,
        "generator_version": GENERATOR_VERSION,
        "chunk_steps": CHUNK_STEPS,
    }
