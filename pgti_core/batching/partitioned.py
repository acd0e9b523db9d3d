"""Partitioned (generalized distributed-index) batching: each rank holds only its own time slice.

From the PGT-I artifact: rank r owns a contiguous block of start indices and loads the steps that
block spans (block + lags + horizon - 1, i.e. its slice plus a halo) straight from the memmap.
Batches are contiguous runs of start indices; only their order is shuffled per epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from pgti_core.batching.index import IndexStrategy


class PartitionedStrategy(IndexStrategy):
    """Index-batching over this rank's block only; resident data ~ raw / P + halo."""

    name = "partitioned"

    def _block(self) -> np.ndarray:
        return np.array_split(self.starts, self.world_size)[self.rank]

    def _span(self) -> tuple[int, int]:
        block = self._block()
        if len(block) == 0:
            return int(self.starts[0]), int(self.starts[0])
        return int(block[0]), int(block[-1]) + self.spec.length

    def local_starts(self) -> np.ndarray:
        """This rank's block, in the order its batches are visited this epoch."""
        return np.concatenate(self.plan()) if len(self._block()) else self._block()

    def plan(self) -> list[np.ndarray]:
        """Contiguous runs of ``batch_size`` starts; the run order is shuffled with seed + epoch."""
        block, b = self._block(), self.batch_size
        stop = len(block) - len(block) % b if self.drop_last else len(block)
        runs = [block[i : i + b] for i in range(0, stop, b)]
        if self.shuffle and runs:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            runs = [runs[i] for i in torch.randperm(len(runs), generator=g).tolist()]
        return runs

    def halo_steps(self) -> int:
        """Steps held beyond the block's own starts (the window overhang)."""
        return self.spec.length - 1
