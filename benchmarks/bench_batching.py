"""Batch assembly: seconds for consecutive ``(x, y)`` batches of 12/12 windows per strategy, PGT-I's
per-sample ``DataLoader`` among them (their ratios against the DESIGN targets: :mod:`.targets`)."""

from __future__ import annotations

import torch

from bench.peers.pgt_reference import per_sample_loader

from .common import (
    BATCH,
    SPEC,
    NextBatch,
    OneSamplePerRound,
    batch_source,
    keep_freed_memory_mapped,
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


def assembly_source(strategy: str, nodes: int, batch: int) -> NextBatch:
    """Endless batches of ``strategy`` (or the per-sample path) on a random ``nodes``-wide series."""
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
        self.next_batch = assembly_source(strategy, nodes, batch)
        for _ in range(BATCHES_PER_CALL):
            self.next_batch()

    def time_batches(self, nodes: int, batch: int, strategy: str) -> None:
        for _ in range(BATCHES_PER_CALL):
            self.next_batch()
