"""Index-batching: one copy of the series, windows gathered from start indices at run time.

``index`` keeps the copy in host memory and moves each batch to the device; ``gpu-index`` keeps it
on the device (streamed there in chunks) and gathers there, so batches never cross the bus.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from pgti_core.batching.base import Batch, Strategy, load_normalized, read_normalized
from pgti_core.batching.gather import WindowGather
from pgti_core.batching.host_copy import check_host_copy, shared_normalized
from pgti_core.batching.prefetch import Prefetcher


class IndexStrategy(Strategy):
    """One normalized host copy of the steps the split spans; a batch is one gather of whole windows.

    Args:
        pin_memory: copy each gathered batch into pinned host memory so the host-to-device
            copy is asynchronous (only meaningful with a CUDA device; default False).
        host_copy: ``"private"`` (default) reads the span into this rank's own buffer;
            ``"shared"`` maps one normalized file per node that every local rank shares
            (:mod:`~pgti_core.batching.host_copy`).
        prefetch: in :meth:`batches` (the training loop), gather and copy the next batch while
            the current one computes (:class:`~pgti_core.batching.prefetch.Prefetcher`; pinned
            staging and a side stream on CUDA; default False).
        See :class:`~pgti_core.batching.base.Strategy` for the rest.
    """

    name = "index"

    def __init__(
        self,
        *args,
        pin_memory: bool = False,
        host_copy: str = "private",
        prefetch: bool = False,
        **kwargs,
    ) -> None:
        self.pin_memory = pin_memory
        self.host_copy = check_host_copy(host_copy)
        self.prefetch = prefetch
        super().__init__(*args, **kwargs)

    def _span(self) -> tuple[int, int]:
        return int(self.starts[0]), int(self.starts[-1]) + self.spec.length

    def _build(self) -> None:
        t0, t1 = self._span()
        self._t0 = t0
        if self.host_copy == "shared":
            host = shared_normalized(self.series, t0, t1, self.normalizer)
        else:
            host = read_normalized(self.series.values, t0, t1, self.normalizer)
        self._hold(torch.from_numpy(host))

    def _hold(self, buf: torch.Tensor) -> None:
        """Keep ``buf`` as the resident span and view its windows (none in an empty span)."""
        self._buf = buf
        self._local = buf.device.type == self.device.type  # gathered where batches are used
        if len(buf) >= self.spec.length:
            self._gather = WindowGather(buf, self.spec.length, self.spec.lags)

    def _buffers(self) -> list[torch.Tensor]:
        return [self._buf]

    def describe(self) -> dict:
        return {**super().describe(), "host_copy": self.host_copy}

    def _rows(self, starts: np.ndarray) -> torch.Tensor:
        """Window starts as rows of the resident span (``[B]`` int64 where the series lives)."""
        rows = np.asarray(starts, dtype=np.int64)
        if self._t0 or not (rows.flags.writeable and rows.flags.c_contiguous):
            rows = rows - self._t0  # a new array: torch.from_numpy refuses negative strides
        rows_t = torch.from_numpy(rows)
        return rows_t if self._buf.device.type == "cpu" else rows_t.to(self._buf.device)

    def stage(self, starts: np.ndarray, out: torch.Tensor) -> torch.Tensor:
        """The windows at ``starts`` gathered where the series lives into ``out`` (a buffer of
        :meth:`stage_shape`); returns the contiguous block written (split it with :meth:`unpack`)."""
        return self._gather.fill(self._rows(starts), out)

    def stage_shape(self) -> tuple[int, int]:
        """Shape of a buffer that holds any batch as one block of whole windows."""
        return self.batch_size, self.spec.length * math.prod(self._buf.shape[1:])

    def unpack(self, block: torch.Tensor) -> Batch:
        """``(x, y)`` views of a staged block, wherever it was moved."""
        return self._gather.split(block)

    def batch(self, starts: np.ndarray) -> Batch:
        rows = self._rows(starts)
        if self._local:  # the x and y views of a reused slot, no copy
            return self._gather(rows)
        block = self._gather.block(rows)  # one copy across the bus, then split there
        if self.pin_memory and self.device.type == "cuda":
            block = block.pin_memory()
        return self.unpack(block.to(self.device, non_blocking=True))

    def batches(self, plan: list[np.ndarray]) -> Iterator[tuple[np.ndarray, Batch]]:
        if not self.prefetch or self._buf.is_cuda:  # gpu-index gathers in place
            return super().batches(plan)
        return Prefetcher(self.stage, self.unpack, self.stage_shape(), self.device)(plan)


class GpuIndexStrategy(IndexStrategy):
    """Index-batching with the series resident on ``device``; runs on CPU too (device = cpu).

    Args:
        reuse_buffer: gather every batch into one preallocated device buffer instead of new
            tensors (no allocation per step). A batch is then valid only until the next call to
            :meth:`batch`, which overwrites it in stream order; default False.
        See :class:`IndexStrategy` for the rest.
    """

    name = "gpu-index"

    def __init__(self, *args, reuse_buffer: bool = False, **kwargs) -> None:
        self.reuse_buffer = reuse_buffer
        super().__init__(*args, **kwargs)

    def _build(self) -> None:
        t0, t1 = self._span()
        self._t0 = t0
        v = self.series.values
        buf = torch.empty((t1 - t0, *v.shape[1:]), dtype=torch.float32, device=self.device)
        for off, block in load_normalized(v, t0, t1, self.normalizer):
            buf[off : off + len(block)].copy_(torch.from_numpy(block))
        self._hold(buf)
        self._out = [
            torch.empty(self.stage_shape(), dtype=torch.float32, device=self.device)
            for _ in range(self.reuse_buffer)
        ]

    def _buffers(self) -> list[torch.Tensor]:
        return [self._buf, *self._out]

    def batch(self, starts: np.ndarray) -> Batch:
        """With ``reuse_buffer`` the batch is gathered into the one preallocated device buffer."""
        if self.reuse_buffer:
            return self.unpack(self.stage(starts, self._out[0]))
        return super().batch(starts)
