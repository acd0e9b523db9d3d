"""Standard batching (PyTorch Geometric Temporal's way): every window of the split materialized."""

from __future__ import annotations

import numpy as np
import torch

from pgti_core.batching.base import Batch, Strategy, read_normalized


class StandardStrategy(Strategy):
    """Stacks every input and target window of the split up front, ~(lags + horizon)x the series.

    At world size > 1 every rank materializes the whole split (the naive standard-DDP baseline) and
    visits its DistributedSampler shard. Windows are built as PGT does: a list of per-window views
    of the normalized series, then stacked into ``x[S, lags, N, F]`` and ``y[S, horizon, N, F]``.
    """

    name = "standard"

    def _build(self) -> None:
        lags, length = self.spec.lags, self.spec.length
        t0, t1 = int(self.starts[0]), int(self.starts[-1]) + length
        norm = read_normalized(self.series.values, t0, t1, self.normalizer)
        rel = self.starts - t0
        self._x = torch.from_numpy(np.stack([norm[s : s + lags] for s in rel]))
        self._y = torch.from_numpy(np.stack([norm[s + lags : s + length] for s in rel]))

    def _buffers(self) -> list[torch.Tensor]:
        return [self._x, self._y]

    def batch(self, starts: np.ndarray) -> Batch:
        rows = torch.from_numpy(np.searchsorted(self.starts, np.asarray(starts, dtype=np.int64)))
        x = torch.index_select(self._x, 0, rows)
        y = torch.index_select(self._y, 0, rows)
        return self._to_device(x, y)
