"""A road-like sensor graph built the way DCRNN builds its adjacency (Li et al., ICLR 2018).

Sensors sit along random roads in the unit square; each sensor gets directed edges to its k
nearest sensors with Gaussian-kernel weights ``exp(-d^2 / sigma^2)`` (sigma = std of the kept
distances), weights below a threshold are dropped and self-loops are excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_BLOCK_PAIRS = 1 << 23  # distance entries per block: 32 MB of float32


@dataclass(frozen=True)
class SensorGraph:
    """Directed weighted graph over sensors placed in the plane.

    Args:
        edge_index: ``[2, E]`` int64 (source, target) node ids, sorted by source.
        edge_weight: ``[E]`` float32 weights in ``(0, 1]``.
        positions: ``[N, 2]`` float64 sensor coordinates in the unit square.
    """

    edge_index: np.ndarray
    edge_weight: np.ndarray
    positions: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.positions.shape[0])


def road_positions(num_nodes: int, rng: np.random.Generator) -> np.ndarray:
    """Place ``num_nodes`` sensors along about ``sqrt(N)`` random straight roads, with small jitter."""
    if num_nodes < 2:
        raise ValueError(f"nodes: need at least 2 sensors, got {num_nodes}")
    num_roads = max(1, int(round(np.sqrt(num_nodes) / 2)))
    a = rng.random((num_roads, 2))
    b = rng.random((num_roads, 2))
    road = rng.integers(0, num_roads, num_nodes)
    along = rng.random(num_nodes)[:, None]
    jitter = rng.normal(scale=0.1 / np.sqrt(num_nodes), size=(num_nodes, 2))
    return a[road] + along * (b[road] - a[road]) + jitter


def knn_gaussian_graph(
    positions: np.ndarray, k: int = 8, threshold: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Directed k-nearest-neighbour edges with thresholded Gaussian-kernel weights, no self-loops.

    Distances are computed block-wise (``torch.cdist`` + ``topk``), so memory stays bounded for
    tens of thousands of sensors.

    Args:
        positions (np.ndarray): ``[N, 2]`` coordinates.
        k (int, default 8): neighbours per sensor (capped at ``N - 1``).
        threshold (float, default 0.1): weights below it are dropped (0 keeps every k-nearest edge
            whose weight did not underflow to 0).

    Returns:
        ``edge_index`` ``[2, E]`` int64 and ``edge_weight`` ``[E]`` float32.
    """
    num_nodes = int(positions.shape[0])
    k = min(int(k), num_nodes - 1)
    if k < 1:
        raise ValueError(f"k: need at least 1 neighbour, got {k}")
    pos = torch.from_numpy(np.ascontiguousarray(positions, dtype=np.float64))
    block = max(1, _BLOCK_PAIRS // num_nodes)
    dists, nbrs = [], []
    for r0 in range(0, num_nodes, block):
        r1 = min(r0 + block, num_nodes)
        d = torch.cdist(pos[r0:r1], pos, compute_mode="donot_use_mm_for_euclid_dist")
        d[torch.arange(r1 - r0), torch.arange(r0, r1)] = float("inf")
        val, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(val)
        nbrs.append(idx)
    dist = torch.cat(dists).numpy()
    nbr = torch.cat(nbrs).numpy()
    sigma = float(dist.std()) or 1.0
    weight = np.exp(-np.square(dist / sigma))
    keep = (weight >= threshold) & (weight > 0)
    src = np.repeat(np.arange(num_nodes, dtype=np.int64), k).reshape(num_nodes, k)
    edge_index = np.stack([src[keep], nbr[keep].astype(np.int64)])
    return edge_index, weight[keep].astype(np.float32)


def road_graph(num_nodes: int, seed: int = 0, k: int = 8, threshold: float = 0.1) -> SensorGraph:
    """A deterministic road-like sensor graph: :func:`road_positions` + :func:`knn_gaussian_graph`.

    Args:
        num_nodes (int): sensors.
        seed (int, default 0): the same seed gives the same graph.
        k (int, default 8): neighbours per sensor before thresholding.
        threshold (float, default 0.1): Gaussian-kernel weight cut-off.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x67726170]))
    positions = road_positions(num_nodes, rng)
    edge_index, edge_weight = knn_gaussian_graph(positions, k=k, threshold=threshold)
    return SensorGraph(edge_index, edge_weight, positions)
