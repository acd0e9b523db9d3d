"""Batch assembly: one ``(x, y)`` batch of 12/12 windows per strategy, against PGT-I's per-sample
``DataLoader`` and against a plain copy of the same bytes (DESIGN.md § Performance targets)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from bench.peers.pgt_reference import per_sample_loader

from .common import (
    BATCH,
    SPEC,
    OneSamplePerRound,
    batch_source,
    best_time,
    keep_freed_memory_mapped,
    median_ratio,
    random_series,
    split_of,
    strategy_on,
)

PER_SAMPLE = "per-sample"
STRATEGIES = [PER_SAMPLE, "standard", "index", "gpu-index", "partitioned"]
WIDTHS = [207, 2000]
"""METR-LA's width, and a graph wide enough that a batch (25 MB) is memory-bound."""
STEPS = {207: 6000, 2000: 3000}
"""Series lengths: the wide one (48 MB) exceeds the last-level cache, so gathers come from DRAM."""
BATCHES_PER_CALL = 128
"""Batches per timed call: 10-90 ms at N = 207, 0.25-0.4 s at N = 2000 (one thread here)."""


def _source(strategy: str, nodes: int, batch: int):
    series = random_series(STEPS[nodes], nodes)
    if strategy == PER_SAMPLE:
        values = torch.from_numpy(series.values)  # already standard-normal: normalized
        it = iter(per_sample_loader(values, split_of(series), SPEC, batch_size=batch))
        return it.__next__
    return batch_source(strategy_on(series, strategy))


class BatchAssembly(OneSamplePerRound):
    """Seconds to assemble :data:`BATCHES_PER_CALL` consecutive batches of the epoch plan, per
    strategy and graph width.

    Memory-bound, so a process's speed depends on what the host's neighbours do with the shared
    cache (:class:`OneSamplePerRound`): each round is one sample of many batches, and asv compares
    the rounds of the two commits.
    """

    params = (WIDTHS, [BATCH], STRATEGIES)
    param_names = ["nodes", "batch", "strategy"]
    timeout = 180

    def setup(self, nodes: int, batch: int, strategy: str) -> None:
        keep_freed_memory_mapped()
        self.next_batch = _source(strategy, nodes, batch)
        for _ in range(BATCHES_PER_CALL):
            self.next_batch()

    def time_batches(self, nodes: int, batch: int, strategy: str) -> None:
        for _ in range(BATCHES_PER_CALL):
            self.next_batch()


def plain_copy(series: torch.Tensor, nbytes: int) -> Callable[[], torch.Tensor]:
    """Contiguous copies of ``nbytes`` from ``series`` into one reused buffer, each from the next
    offset (cycling), so the reference reads memory the way a gather does, not one cached slice."""
    flat = series.reshape(-1)
    n = nbytes // flat.element_size()
    if n > flat.numel():
        raise ValueError(f"nbytes: {nbytes} exceed the series' {flat.numel() * 4} bytes")
    dst = torch.empty(n, dtype=flat.dtype)
    offsets = itertools.cycle(range(0, flat.numel() - n + 1, max(1, (flat.numel() - n) // 7)))
    return lambda: dst.copy_(flat.narrow(0, next(offsets), n))


class BatchThroughput:
    """Index batching against its references (targets: >= 2x the per-sample DataLoader at METR-LA
    width, >= 0.8x a plain copy of the same bytes at both widths); ratios measured back to back
    in one process."""

    params = WIDTHS
    param_names = ["nodes"]
    timeout = 300

    def setup(self, nodes: int) -> None:
        self.index = _source("index", nodes, BATCH)
        self.per_sample = _source(PER_SAMPLE, nodes, BATCH)
        x, y = self.index()
        self.batch_bytes = x.numel() * x.element_size() + y.numel() * y.element_size()
        series = torch.from_numpy(random_series(STEPS[nodes], nodes).values)
        self.copy = plain_copy(series, self.batch_bytes)

    def track_index_vs_per_sample(self, nodes: int) -> float:
        """Batches/s of index batching over batches/s of the per-sample DataLoader."""
        return median_ratio(lambda: best_time(self.per_sample, repeat=1, min_time=0.1),
                            lambda: best_time(self.index, repeat=1, min_time=0.1))  # fmt: skip

    track_index_vs_per_sample.unit = "x"

    def track_index_vs_plain_copy(self, nodes: int) -> float:
        """Batches/s of index batching over copies/s of the same bytes from a series-sized tensor."""
        return median_ratio(lambda: best_time(self.copy, repeat=1, min_time=0.1),
                            lambda: best_time(self.index, repeat=1, min_time=0.1))  # fmt: skip

    track_index_vs_plain_copy.unit = "x"
