"""Batch assembly: one ``(x, y)`` batch of 12/12 windows per strategy, against PGT-I's per-sample
``DataLoader`` and against the machine's copy bandwidth (DESIGN.md § Performance targets)."""

from __future__ import annotations

import torch

from bench.peers.pgt_reference import per_sample_loader

from .common import (
    BATCH,
    SPEC,
    batch_source,
    best_time,
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
COPY_BYTES = 1 << 30
"""Size of the tensor whose copy gives the reference bandwidth."""


def _source(strategy: str, nodes: int, batch: int):
    series = random_series(STEPS[nodes], nodes)
    if strategy == PER_SAMPLE:
        values = torch.from_numpy(series.values)  # already standard-normal: normalized
        it = iter(per_sample_loader(values, split_of(series), SPEC, batch_size=batch))
        return it.__next__
    return batch_source(strategy_on(series, strategy))


class BatchAssembly:
    """Seconds to assemble one batch, per strategy and graph width."""

    params = (WIDTHS, [BATCH], STRATEGIES)
    param_names = ["nodes", "batch", "strategy"]
    timeout = 180

    def setup(self, nodes: int, batch: int, strategy: str) -> None:
        self.next_batch = _source(strategy, nodes, batch)
        self.next_batch()

    def time_batch(self, nodes: int, batch: int, strategy: str) -> None:
        self.next_batch()


def copy_bandwidth(nbytes: int = COPY_BYTES, repeat: int = 3) -> float:
    """Bytes per second of the fastest of ``repeat`` copies of an ``nbytes`` float32 tensor."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch of the destination pages
    return nbytes / best_time(lambda: dst.copy_(src), repeat=repeat, min_time=0.0)


class BatchThroughput:
    """Index batching against its references (targets: >= 5x per-sample at METR-LA width,
    >= 0.8x copy bandwidth on a wide graph); ratios measured back to back in one process."""

    params = WIDTHS
    param_names = ["nodes"]
    timeout = 300

    def setup(self, nodes: int) -> None:
        self.index = _source("index", nodes, BATCH)
        self.per_sample = _source(PER_SAMPLE, nodes, BATCH)
        x, y = self.index()
        self.batch_bytes = x.numel() * x.element_size() + y.numel() * y.element_size()

    def track_index_vs_per_sample(self, nodes: int) -> float:
        """Batches/s of index batching over batches/s of the per-sample DataLoader."""
        return median_ratio(lambda: best_time(self.per_sample, repeat=1, min_time=0.1),
                            lambda: best_time(self.index, repeat=1, min_time=0.1))  # fmt: skip

    track_index_vs_per_sample.unit = "x"

    def track_index_vs_copy_bandwidth(self, nodes: int) -> float:
        """Batch bytes/s of index batching over the bytes/s of copying a 1 GiB tensor."""
        return median_ratio(lambda: self.batch_bytes / best_time(self.index, repeat=1, min_time=0.1),
                            lambda: copy_bandwidth(repeat=1))  # fmt: skip

    track_index_vs_copy_bandwidth.unit = "x"
