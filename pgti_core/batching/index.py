"""Index-batching: one copy of the series, windows gathered from start indices at run time.

``index`` keeps the copy in host memory and moves each batch to the device; ``gpu-index`` keeps it
on the device (streamed there in chunks) and gathers there, so batches never cross the bus.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from pgti_core.batching.base import (
    Batch,
    Strategy,
    gather_windows,
    load_normalized,
    read_normalized,
)
from pgti_core.batching.gather import WindowGather, split_window
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
        self._gather: WindowGather | None = None
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
        self._buf = torch.from_numpy(host)

    def _buffers(self) -> list[torch.Tensor]:
        return [self._buf]

    def describe(self) -> dict:
        return {**super().describe(), "host_copy": self.host_copy}

    def _rows(self, starts: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(np.asarray(starts, dtype=np.int64) - self._t0)
        return rows.to(self._buf.device)

    def gather(self, starts: np.ndarray, out: Sequence[torch.Tensor] | None = None) -> Batch:
        """``(x, y)`` gathered where the series lives (host for ``index``), not yet moved;
        into ``out`` (buffers of :meth:`gather_shapes`) when given, as views of it."""
        rows = self._rows(starts)
        ox, oy = out if out is not None else (None, None)
        x = gather_windows(self._buf, rows, self.spec.lags, out=ox)
        y = gather_windows(self._buf, rows + self.spec.lags, self.spec.horizon, out=oy)
        return x, y

    def gather_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of buffers that hold any batch's ``x`` and ``y`` (rows = samples x steps)."""
        per_step = tuple(self._buf.shape[1:])
        return [(self.batch_size * n, *per_step) for n in (self.spec.lags, self.spec.horizon)]

    def batch(self, starts: np.ndarray) -> Batch:
        if self._gather is None or self._gather.buf is not self._buf:
            self._gather = WindowGather(self._buf, self.spec.length)
        x, y = split_window(self._gather(self._rows(starts)), self.spec.lags)
        if self.pin_memory and self.device.type == "cuda" and not x.is_cuda:
            x, y = x.pin_memory(), y.pin_memory()
        return self._to_device(x, y)

    def batches(self, plan: list[np.ndarray]) -> Iterator[tuple[np.ndarray, Batch]]:
        if not self.prefetch or self._buf.is_cuda:  # gpu-index gathers in place
            return super().batches(plan)
        return Prefetcher(self.gather, self.gather_shapes(), self.device)(plan)


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
        self._buf = torch.empty((t1 - t0, *v.shape[1:]), dtype=torch.float32, device=self.device)
        for off, block in load_normalized(v, t0, t1, self.normalizer):
            self._buf[off : off + len(block)].copy_(torch.from_numpy(block))
        self._out = [
            torch.empty(shape, dtype=torch.float32, device=self.device)
            for shape in (self.gather_shapes() if self.reuse_buffer else [])
        ]

    def _buffers(self) -> list[torch.Tensor]:
        return [self._buf, *self._out]

    def gather(self, starts: np.ndarray, out: Sequence[torch.Tensor] | None = None) -> Batch:
        return super().gather(
            starts, out if out is not None or not self.reuse_buffer else self._out
        )

    def batch(self, starts: np.ndarray) -> Batch:
        """With ``reuse_buffer`` the batch is gathered into the preallocated device buffers."""
        return self.gather(starts) if self.reuse_buffer else super().batch(starts)
