"""Z-score of feature 0 with the statistics of the training input windows, computed without windows.

DCRNN scales with the mean/std of ``x_train[..., 0]``, i.e. of every training input window. A step
t appears in as many of those windows as there are training starts s with s <= t < s + lags, so the
same mean/std are a weighted mean/std over the steps, which a streaming pass computes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pgti_core.data.windows import WindowSpec

_CHUNK_BYTES = 8 << 20  # bounded transient memory per pass


@dataclass(frozen=True)
class Normalizer:
    """Affine z-score of one channel: ``(x - mean) / std`` forward, ``x * std + mean`` back.

    Args:
        mean: mean of the channel over the training input windows.
        std: population std of the same values (1.0 if they are constant).
        channel: the feature normalized (0 = speed).
    """

    mean: float
    std: float
    channel: int = 0

    def apply_(self, block: np.ndarray) -> np.ndarray:
        """Normalize ``block[..., channel]`` in place (float32 arithmetic, so every path agrees)."""
        ch = block[..., self.channel]  # a view: the ufuncs write into block
        np.subtract(ch, np.float32(self.mean), out=ch)
        np.divide(ch, np.float32(self.std), out=ch)
        return block

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """De-normalize values of the normalized channel."""
        return x * self.std + self.mean

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "channel": self.channel}


def step_weights(num_steps: int, spec: WindowSpec, train_starts: np.ndarray) -> np.ndarray:
    """How many training input windows contain each step (int64, length ``num_steps``)."""
    w = np.zeros(num_steps + 1, dtype=np.int64)
    np.add.at(w, np.asarray(train_starts, dtype=np.int64), 1)
    np.add.at(w, np.asarray(train_starts, dtype=np.int64) + spec.lags, -1)
    return np.cumsum(w[:-1])


def train_window_stats(
    values: np.ndarray | torch.Tensor, spec: WindowSpec, train_starts: np.ndarray, channel: int = 0
) -> Normalizer:
    """Exact mean/std of ``channel`` over all training input windows, in one chunked pass."""
    if len(train_starts) == 0:
        raise ValueError("train split: empty, cannot compute normalization statistics")
    num_steps, num_nodes = int(values.shape[0]), int(values.shape[1])
    weights = step_weights(num_steps, spec, train_starts)
    last = int(np.max(train_starts)) + spec.lags
    chunk = max(1, _CHUNK_BYTES // max(1, num_nodes * int(values.shape[2]) * 4))
    total = s1 = s2 = 0.0
    for t0 in range(int(np.min(train_starts)), last, chunk):
        t1 = min(t0 + chunk, last)
        block = values[t0:t1, :, channel]
        block = block.numpy() if isinstance(block, torch.Tensor) else np.asarray(block)
        block = block.astype(np.float64)
        w = weights[t0:t1].astype(np.float64)
        s1 += float(w @ block.sum(axis=1))
        s2 += float(w @ (block * block).sum(axis=1))
        total += float(w.sum()) * num_nodes
    mean = s1 / total
    var = max(s2 / total - mean * mean, 0.0)
    std = float(np.sqrt(var)) if var > 0 else 1.0
    return Normalizer(mean=float(mean), std=std, channel=channel)
