"""Shared fixtures: small random series made in memory (no files, no network)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pgti_core.data.series import Series

# pytest-xdist runs two workers on two cores: one thread each (and in the ranks they spawn)
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _seeded_rngs() -> None:
    """Every test draws the same numbers whichever xdist worker runs it and in whatever order."""
    torch.manual_seed(0)
    np.random.seed(0)


def random_series(steps: int = 400, nodes: int = 6, features: int = 2, seed: int = 0) -> Series:
    """A small positive series on a ring graph, with some exact zeros (missing readings)."""
    rng = np.random.default_rng(seed)
    values = (rng.random((steps, nodes, features), dtype=np.float32) * 60).astype(np.float32)
    values[rng.random((steps, nodes)) < 0.03, 0] = 0.0
    src = np.arange(nodes)
    edge_index = np.stack([np.r_[src, src], np.r_[(src + 1) % nodes, (src - 1) % nodes]])
    edge_weight = rng.random(edge_index.shape[1]).astype(np.float32) + 0.1
    return Series(values, edge_index, edge_weight, name="random")


@pytest.fixture
def series() -> Series:
    return random_series()
