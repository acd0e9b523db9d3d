"""The Series: one spatiotemporal signal X[T, N, F] on a static graph, the input of every strategy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

Values = np.ndarray | torch.Tensor

_FINITE_CHUNK_BYTES = 64 << 20


@dataclass
class Series:
    """A float32 series ``values[T, N, F]`` with a directed weighted graph over its N nodes.

    Args:
        values: ``[T, N, F]`` float32 array, read-only memmap or tensor. Other float dtypes are
            cast to float32 (a copy); integer data is rejected.
        edge_index: ``[2, E]`` int64 source/target node ids.
        edge_weight: ``[E]`` float32 weights.
        name: dataset name, used in results rows.
        timestamps: optional ``[T]`` datetime64 stamps.
        meta: free-form provenance (profile, seed, file paths).
    """

    values: Values
    edge_index: np.ndarray
    edge_weight: np.ndarray
    name: str = "series"
    timestamps: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = self.values
        if v.ndim != 3:
            raise ValueError(f"values: expected 3 dims [T, N, F], got shape {tuple(v.shape)}")
        if isinstance(v, torch.Tensor):
            if not v.is_floating_point():
                raise ValueError(f"values: expected float data, got {v.dtype}")
            if v.dtype != torch.float32:
                self.values = v.float()
        else:
            if not np.issubdtype(v.dtype, np.floating):
                raise ValueError(f"values: expected float data, got {v.dtype}")
            if v.dtype != np.float32:
                self.values = v.astype(np.float32)
        self.edge_index = np.asarray(self.edge_index, dtype=np.int64)
        self.edge_weight = np.asarray(self.edge_weight, dtype=np.float32)
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index: expected shape [2, E], got {self.edge_index.shape}")
        if self.edge_weight.shape != (self.edge_index.shape[1],):
            raise ValueError(
                f"edge_weight: expected {self.edge_index.shape[1]} weights, got {self.edge_weight.shape}"
            )
        if self.edge_index.size and (
            self.edge_index.min() < 0 or self.edge_index.max() >= self.num_nodes
        ):
            raise ValueError(
                f"edge_index: node ids must lie in [0, {self.num_nodes}) to match the series' "
                f"{self.num_nodes} nodes, got range [{self.edge_index.min()}, {self.edge_index.max()}]"
            )
        if self.timestamps is not None and len(self.timestamps) != self.num_steps:
            raise ValueError(
                f"timestamps: expected {self.num_steps} stamps, got {len(self.timestamps)}"
            )

    @property
    def num_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.values.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.values.shape[2])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the raw values (one copy of the series)."""
        return self.num_steps * self.num_nodes * self.num_features * 4

    def check_finite(self) -> None:
        """Raise ``ValueError`` if any value is NaN or inf; scans in chunks so memmaps stay cheap."""
        step_bytes = max(1, self.num_nodes * self.num_features * 4)
        chunk = max(1, _FINITE_CHUNK_BYTES // step_bytes)
        for t0 in range(0, self.num_steps, chunk):
            block = self.values[t0 : t0 + chunk]
            ok = (
                torch.isfinite(block).all()
                if isinstance(block, torch.Tensor)
                else np.isfinite(block).all()
            )
            if not bool(ok):
                raise ValueError(
                    f"values: NaN or inf found in steps [{t0}, {min(t0 + chunk, self.num_steps)}); "
                    "encode missing readings as 0"
                )
