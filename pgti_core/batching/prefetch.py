"""Host-to-device prefetch: the next batch's gather and copy run while the current step computes.

A host-gathering strategy (``index``) spends each step's data wait gathering a batch and copying
it to the device. :class:`Prefetcher` keeps one batch in flight: while the consumer computes on
batch ``i`` it has already gathered batch ``i + 1`` into a reused staging buffer (pinned, so the
copy is asynchronous) as one contiguous block of whole windows, and queued that block's one copy
on a side CUDA stream; an event orders the consumer's stream after that copy. Two staging slots
alternate, and a slot is refilled only once the copy that last read it has finished.

On a CPU device the same code runs without streams or pinning (the "copy" is a real copy out of
the staging slot), so the batches it yields can be checked bit for bit on any machine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor]
Stage = Callable[[np.ndarray, torch.Tensor], torch.Tensor]
Unpack = Callable[[torch.Tensor], Batch]


@dataclass
class _InFlight:
    """A batch whose copy has been queued: its starts, its block on the device and the copy's
    event."""

    starts: np.ndarray
    block: torch.Tensor
    event: torch.cuda.Event | None


class _Slot:
    """One staging buffer, allocated once and refilled batch after batch."""

    def __init__(self, shape: Sequence[int], pinned: bool) -> None:
        self.buffer = torch.empty(tuple(shape), dtype=torch.float32, pin_memory=pinned)
        self.event: torch.cuda.Event | None = None  # the last copy that read this slot

    def free(self) -> torch.Tensor:
        """The buffer, once the copy that last read it has finished."""
        if self.event is not None:
            self.event.synchronize()
        return self.buffer


class Prefetcher:
    """Iterate a plan of batches with the next batch's gather and host-to-device copy in flight.

    Args:
        stage: ``(starts, out) -> block``: the batch gathered on the host straight into the
            float32 buffer ``out``, returned as the contiguous part of it written (e.g.
            :meth:`IndexStrategy.stage`).
        unpack: ``block -> (x, y)``: views of a block once it is on the device (e.g.
            :meth:`IndexStrategy.unpack`).
        shape: shape of a buffer that holds any batch (e.g. :meth:`IndexStrategy.stage_shape`).
        device: where batches are delivered; on CUDA the staging is pinned and copies run on a
            side stream, elsewhere the same steps run synchronously.
    """

    def __init__(
        self, stage: Stage, unpack: Unpack, shape: Sequence[int], device: torch.device | str
    ) -> None:
        self.stage, self.unpack = stage, unpack
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._slots = [_Slot(shape, pinned=self.cuda) for _ in range(2)]
        self._stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._issued = 0

    def __call__(self, plan: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, Batch]]:
        """Yield ``(starts, (x, y))`` for each entry of ``plan``, in order, on ``device``."""
        pending: deque[_InFlight] = deque()
        for starts in plan:
            pending.append(self._issue(starts))
            if len(pending) == 2:  # the next batch is queued: hand over the current one
                yield self._ready(pending.popleft())
        while pending:
            yield self._ready(pending.popleft())

    def _issue(self, starts: np.ndarray) -> _InFlight:
        slot = self._slots[self._issued % 2]
        self._issued += 1
        staged = self.stage(starts, slot.free())
        stream = torch.cuda.stream(self._stream) if self.cuda else nullcontext()
        with stream:
            block = torch.empty_like(staged, device=self.device)
            block.copy_(staged, non_blocking=self.cuda)
            event = torch.cuda.Event() if self.cuda else None
            if event is not None:
                event.record(self._stream)
        slot.event = event
        return _InFlight(starts, block, event)

    def _ready(self, item: _InFlight) -> tuple[np.ndarray, Batch]:
        """Order the consumer's stream after the batch's copy and hand the batch over."""
        if item.event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(item.event)
            item.block.record_stream(current)  # allocated on the side stream, used on this one
        return item.starts, self.unpack(item.block)
