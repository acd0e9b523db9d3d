"""Shared fixtures of the asv suite: random series with a paper dataset's shape, strategies and
models on them, one training step, and the one-sample-per-round timing attributes."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

import numpy as np
import torch

from bench.peers.pgt_reference import BatchedDCRNNReference
from bench.peers.tgcn_reference import TGCNReference
from pgti_core.batching import Strategy, WindowSpec, build_strategy, split_starts
from pgti_core.data.normalize import Normalizer, train_window_stats
from pgti_core.data.series import Series
from pgti_core.data.synthetic import synthetic_graph
from pgti_core.models.registry import build_model
from pgti_core.train.metrics import masked_mae

SPEC = WindowSpec(12, 12)
BATCH = 64
PGT_REFERENCE = "pgt-batched-dcrnn"
"""Name of PGT's ``BatchedDCRNN(2, 2, K=3)`` baseline next to the registry's model names."""
TGCN_REFERENCE = "pgt-style-tgcn"
"""Name of the PGT-style T-GCN (edge index replicated per sample) next to the model names."""


def random_series(
    steps: int, nodes: int, features: int = 2, profile: str = "metr-la", seed: int = 0
) -> Series:
    """A ``[steps, nodes, features]`` standard-normal series on the profile's synthetic road graph."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((steps, nodes, features), dtype=np.float32)
    graph = synthetic_graph(profile, nodes, seed)
    return Series(values, graph.edge_index, graph.edge_weight, name=f"{profile}-random")


def split_of(series: Series, split: str = "train", limit: int | None = None) -> np.ndarray:
    """Window starts of ``split`` (the first ``limit`` of them when given)."""
    return split_starts(series.num_steps, SPEC)[split][:limit]


def normalizer_of(series: Series) -> Normalizer:
    """Training-window statistics of ``series`` (what every strategy normalizes with)."""
    return train_window_stats(series.values, SPEC, split_of(series))


def strategy_on(
    series: Series,
    name: str,
    split: str = "train",
    limit: int | None = None,
    normalizer: Normalizer | None = None,
    **kwargs,
) -> Strategy:
    """Strategy ``name`` over one split of ``series`` at batch size :data:`BATCH`."""
    return build_strategy(
        name,
        series,
        SPEC,
        split_of(series, split, limit),
        normalizer or normalizer_of(series),
        batch_size=BATCH,
        **kwargs,
    )


NextBatch = Callable[[], tuple[torch.Tensor, torch.Tensor]]
"""A source of endless ``(x, y)`` batches, one gather per call."""


def batch_source(strategy: Strategy) -> NextBatch:
    """Endless batches of ``strategy``'s epoch plan, one gather per call."""
    plan, i = strategy.plan(), 0

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal i
        i += 1
        return strategy.batch(plan[i % len(plan)])

    return next_batch


def model_for(name: str, series: Series) -> torch.nn.Module:
    """A registry model, or a peer (:data:`PGT_REFERENCE`, :data:`TGCN_REFERENCE`), on ``series``'
    graph."""
    torch.manual_seed(0)
    if name == TGCN_REFERENCE:
        return TGCNReference(
            series.num_nodes,
            series.num_features,
            series.edge_index,
            series.edge_weight,
            SPEC.horizon,
        )
    if name == PGT_REFERENCE:
        return BatchedDCRNNReference(
            series.num_nodes,
            series.edge_index,
            series.edge_weight,
            series.num_features,
            series.num_features,
            K=3,
            horizon=SPEC.horizon,
        )
    return build_model(
        name,
        num_nodes=series.num_nodes,
        num_features=series.num_features,
        edge_index=series.edge_index,
        edge_weight=series.edge_weight,
        lags=SPEC.lags,
        horizon=SPEC.horizon,
    )


def train_step(name: str, series: Series) -> Callable[[], float]:
    """One Adam step of model ``name`` on a fixed random batch of :data:`BATCH` windows."""
    model = model_for(name, series)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    shape = (BATCH, SPEC.lags, series.num_nodes, series.num_features)
    x, y = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)

    def step() -> float:
        loss = masked_mae(model(x)[..., 0], y[..., 0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


ROUNDS = 5
"""Rounds (one fresh process each, one sample per round) of the CPU ``time_`` benchmarks."""


class OneSamplePerRound:
    """asv attributes for a ``time_`` benchmark whose unit of replication is the process.

    On this host a process's speed is set at random by its neighbours' use of the shared cache
    and memory bus: the index gather at N = 207 took 76-84 us a batch in some processes and
    95-115 us in others (medians of 32-batch samples, 2026-12-04), mostly steady within one. asv's test treats samples as independent, so 5 samples a
    round from 4 rounds made one process's state look like 5 agreeing draws, and a doc-only pair
    flagged it (1.26-1.40x). One sample per round (each averaging many calls' work, and timed
    after the setup's warm-up) makes asv compare processes. :data:`ROUNDS` is 5 because of how
    asv 0.6 decides: with 5 samples a side it compares 99% intervals, which a 2x change
    separates; with 6 a side its Mann-Whitney threshold (p < 0.002) cannot be met even by full
    separation (tests/test_asv.py). asv_runner 0.3 runs one call per sample when a benchmark has
    a setup (asv#966), so the averaging is done inside the timed call.
    """

    number = 1
    repeat = 1
    rounds = ROUNDS
    warmup_time = 0.0  # each setup warms up


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
"""glibc's ``mallopt`` parameters (malloc.h)."""


def keep_freed_memory_mapped() -> bool:
    """Make glibc keep freed memory mapped for reuse (no ``mmap`` chunks, no heap trimming), so
    that a timed call reuses warm pages instead of faulting in fresh zeroed ones.

    A first touch costs 1-15 us per page on this VM depending on the host's state (README, asv
    section), which moved a 50 ms dcrnn-paper step by up to 1.4x between two commits' rounds.
    Called in the setup of the ``time_`` benchmarks only: the peer ratios keep the default
    allocator, whose page faults are part of what a peer costs its users. Returns whether it
    applied; where glibc's ``mallopt`` is missing or refuses, it says on stderr that times
    include page faults.
    """
    mallopt = getattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallopt", None)
    if mallopt is not None and mallopt(_M_MMAP_MAX, 0) + mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 2:
        return True
    print(
        "benchmarks: glibc mallopt unavailable or refused; times include page faults",
        file=sys.stderr,
    )
    return False
