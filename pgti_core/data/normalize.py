"""Z-score of feature 0 with the statistics of the training input windows, computed without windows.

DCRNN scales with the mean/std of ``x_train[..., 0]``, i.e. of every training input window. A step
t appears in as many of those windows as there are training starts s with s <= t < s + lags, so the
same mean/std are a weighted mean/std over the steps, which a streaming pass computes exactly.
The pass reads the series with explicit reads (no file pages left mapped), and its result is
cached beside a cached dataset per window geometry and split (:func:`cached_train_window_stats`),
so a dataset is scanned once, not once per rank and run.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pgti_core.data.reader import read_steps
from pgti_core.data.series import Series
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
        block = read_steps(values, t0, t1)[:, :, channel].astype(np.float64)
        w = weights[t0:t1].astype(np.float64)
        s1 += float(w @ block.sum(axis=1))
        s2 += float(w @ (block * block).sum(axis=1))
        total += float(w.sum()) * num_nodes
    mean = s1 / total
    var = max(s2 / total - mean * mean, 0.0)
    std = float(np.sqrt(var)) if var > 0 else 1.0
    return Normalizer(mean=float(mean), std=std, channel=channel)


STATS_DIR = "stats"


def cached_train_window_stats(
    series: Series, spec: WindowSpec, train_starts: np.ndarray, channel: int = 0
) -> Normalizer:
    """:func:`train_window_stats`, read from (or written once to) the dataset's cache entry.

    The file ``<entry>/stats/<key>.json`` is keyed by the values' sha256, the window geometry,
    the training split and the channel; it is written atomically (temp file, then rename), so
    concurrent ranks either read a whole file or compute the same numbers. A series that is not
    a cache entry (no ``cache_path`` in its meta) is computed every time.
    """
    entry, sha = series.meta.get("cache_path"), series.meta.get("sha256")
    starts = np.asarray(train_starts, dtype=np.int64)
    if not entry or not sha or len(starts) == 0:
        return train_window_stats(series.values, spec, starts, channel)
    key = (
        f"train-l{spec.lags}-h{spec.horizon}-s{int(starts[0])}-{int(starts[-1])}-n{len(starts)}"
        f"-c{channel}-{sha[:16]}"
    )
    path = Path(entry) / STATS_DIR / f"{key}.json"
    try:
        return Normalizer(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass  # missing or unreadable: compute and (re)write
    norm = train_window_stats(series.values, spec, starts, channel)
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(norm.as_dict(), f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: the statistics are still right, only not kept
    return norm
