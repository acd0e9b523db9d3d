"""The Strategy protocol: what every batching strategy holds, which windows a rank visits, and how a
batch is cut. Subclasses differ only in what they keep resident and where they gather."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from pgti_core.data.normalize import Normalizer
from pgti_core.data.reader import read_steps
from pgti_core.data.series import Series
from pgti_core.data.windows import WindowSpec

Batch = tuple[torch.Tensor, torch.Tensor]

_CHUNK_BYTES = 8 << 20  # small: the transient copy of a chunk counts in every peak


def load_normalized(
    values: np.ndarray | torch.Tensor, t0: int, t1: int, normalizer: Normalizer
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, block)`` normalized float32 copies of ``values[t0:t1]`` in bounded chunks.

    Chunks are read with :func:`~pgti_core.data.reader.read_steps` (explicit reads of a memmap's
    file, no pages left mapped), so the transient cost is one chunk, and every strategy
    normalizes through here or :func:`read_normalized`, so their buffers agree bit for bit.
    """
    chunk = _chunk_steps(values)
    for a in range(t0, t1, chunk):
        b = min(a + chunk, t1)
        yield a - t0, _normalized(read_steps(values, a, b), a, b, normalizer)


def read_normalized(
    values: np.ndarray | torch.Tensor,
    t0: int,
    t1: int,
    normalizer: Normalizer,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """One normalized float32 host copy of ``values[t0:t1]``, read chunk by chunk into ``out``.

    Each chunk is read straight into its place in the result and normalized there: no extra
    copy, no mapped file pages.
    """
    out = np.empty((t1 - t0, *values.shape[1:]), dtype=np.float32) if out is None else out
    chunk = _chunk_steps(values)
    for a in range(t0, t1, chunk):
        b = min(a + chunk, t1)
        _normalized(read_steps(values, a, b, out[a - t0 : b - t0]), a, b, normalizer)
    return out


def _chunk_steps(values: np.ndarray | torch.Tensor) -> int:
    return max(1, _CHUNK_BYTES // max(1, int(np.prod(values.shape[1:])) * 4))


def _normalized(block: np.ndarray, a: int, b: int, normalizer: Normalizer) -> np.ndarray:
    if not np.isfinite(block).all():
        raise ValueError(
            f"values: NaN or inf found in steps [{a}, {b}); encode missing readings as 0"
        )
    return normalizer.apply_(block)


class Strategy(ABC):
    """One rank's batching of one split.

    Args:
        series: the dataset (values may be a read-only memmap).
        spec: window geometry.
        starts: sorted window start indices of the split (e.g. ``split_starts(...)["train"]``).
        normalizer: feature-0 scaling shared by all strategies.
        batch_size: samples per batch on this rank (default 64, the paper's per-GPU batch).
        rank: this rank, in ``[0, world_size)`` (default 0).
        world_size: ranks sharing the split (default 1).
        shuffle: training order (sampler semantics); False = fixed order, exact shards (eval).
        seed: base seed of the per-epoch shuffle (default 0).
        drop_last: drop the last partial batch (default False).
        device: where batches are delivered (default ``"cpu"``).
    """

    name: ClassVar[str]

    def __init__(
        self,
        series: Series,
        spec: WindowSpec,
        starts: np.ndarray,
        normalizer: Normalizer,
        *,
        batch_size: int = 64,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        if world_size < 1:
            raise ValueError(f"world_size: must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: must lie in [0, {world_size}), got {rank}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        starts = np.asarray(starts, dtype=np.int64)
        if starts.ndim != 1 or len(starts) == 0:
            raise ValueError("starts: the split is empty; nothing to batch")
        if np.any(np.diff(starts) <= 0):
            raise ValueError("starts: must be strictly increasing")
        if starts[0] < 0 or starts[-1] + spec.length > series.num_steps:
            raise ValueError(
                f"lags+horizon: windows of {spec.length} steps from start {starts[-1]} "
                f"overrun the series' {series.num_steps} steps"
            )
        if len(starts) < world_size and shuffle:
            raise ValueError(
                f"world_size: {world_size} ranks but only {len(starts)} windows in the split"
            )
        self.series, self.spec, self.starts, self.normalizer = series, spec, starts, normalizer
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.device = torch.device(device)
        self.epoch = 0
        self._build()

    # ----- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def _build(self) -> None:
        """Create the resident buffers."""

    @abstractmethod
    def batch(self, starts: np.ndarray) -> Batch:
        """``(x[B, lags, N, F], y[B, horizon, N, F])`` on ``device`` for these start indices."""

    @abstractmethod
    def _buffers(self) -> list[torch.Tensor | np.ndarray]:
        """The arrays this strategy keeps for its lifetime (for ``resident_bytes``)."""

    # ----- shared behaviour --------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle, as ``DistributedSampler.set_epoch`` does."""
        self.epoch = int(epoch)

    def local_starts(self) -> np.ndarray:
        """Start indices this rank visits this epoch, in visiting order (DistributedSampler)."""
        if not self.shuffle:
            return np.array_split(self.starts, self.world_size)[self.rank]
        sampler = DistributedSampler(
            range(len(self.starts)),
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=self.drop_last,
        )
        sampler.set_epoch(self.epoch)
        return self.starts[np.fromiter(iter(sampler), dtype=np.int64)]

    def plan(self) -> list[np.ndarray]:
        """This epoch's batches as arrays of start indices."""
        local = self.local_starts()
        b = self.batch_size
        stop = len(local) - len(local) % b if self.drop_last else len(local)
        return [local[i : i + b] for i in range(0, stop, b)]

    def __iter__(self) -> Iterator[Batch]:
        for starts in self.plan():
            yield self.batch(starts)

    def batches(self, plan: list[np.ndarray]) -> Iterator[tuple[np.ndarray, Batch]]:
        """``(starts, batch)`` for each entry of ``plan``, in order (the training loop's source;
        a strategy may overlap the next batch's preparation with the current step)."""
        for starts in plan:
            yield starts, self.batch(starts)

    def __len__(self) -> int:
        return len(self.plan())

    def resident_bytes(self) -> dict[str, int]:
        """Bytes of the buffers kept, by placement: ``host`` (CPU memory) and ``device`` (GPU)."""
        out = {"host": 0, "device": 0}
        for buf in self._buffers():
            on_device = isinstance(buf, torch.Tensor) and buf.device.type != "cpu"
            nbytes = (
                buf.numel() * buf.element_size() if isinstance(buf, torch.Tensor) else buf.nbytes
            )
            out["device" if on_device else "host"] += int(nbytes)
        return out

    def describe(self) -> dict:
        """Fields for the results row."""
        res = self.resident_bytes()
        return {
            "strategy": self.name,
            "device": str(self.device),
            "local_samples": int(len(self.local_starts())),
            "resident_host_bytes": res["host"],
            "resident_device_bytes": res["device"],
        }

    def close(self) -> None:  # noqa: B027 - a deliberate no-op default, not an abstract hook
        """Release external resources (a Dask client, say); in-memory strategies hold none."""

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        if self.device.type == "cpu":
            return x, y
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
