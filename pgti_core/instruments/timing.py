"""Wall-clock timing of one rank: named phases (preparation, training, validation) and training
steps split into data wait, compute and optimizer, with an optional device sync so GPU work is
counted where it happens rather than where it is queued."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

Sync = Callable[[], None]

STEP_PARTS = ("data", "compute", "optimizer")


def _no_sync() -> None:
    """Nothing to wait for on the host."""


def device_sync(device: torch.device | str) -> Sync:
    """A callable that waits for ``device``'s queued work: ``torch.cuda.synchronize`` on CUDA,
    a no-op elsewhere."""
    device = torch.device(device)
    return functools.partial(torch.cuda.synchronize, device) if device.type == "cuda" else _no_sync


class PhaseTimer:
    """Accumulated wall seconds per named phase; phases may repeat and nest (each counts inclusively).

    Args:
        sync (callable, optional): called before reading the clock, e.g. :func:`device_sync`.
    """

    def __init__(self, sync: Sync | None = None) -> None:
        self.sync = sync or _no_sync
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a ``with`` block and add it to ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty phase name, got {name!r}")
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name`` (for times measured elsewhere)."""
        if not seconds >= 0:
            raise ValueError(
                f"seconds: expected a non-negative duration for {name!r}, got {seconds}"
            )
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1


@dataclass(frozen=True)
class StepSummary:
    """Step and epoch statistics of one rank; ``None`` where nothing was recorded.

    Args:
        steps: number of steps recorded.
        samples: samples over those steps.
        step_ms_p50: median step time (data + compute + optimizer) in ms.
        step_ms_p95: 95th percentile step time in ms.
        samples_per_s: samples over the summed step time.
        data_wait_frac: share of step time spent waiting for data (host-to-device copy included).
        compute_frac: share spent in forward and backward.
        optimizer_frac: share spent in the optimizer step (gradient all-reduce included).
        epochs: number of epochs recorded.
        epoch_s_mean: mean epoch wall time in seconds.
        epoch_s_std: sample standard deviation of the epoch times (0 for one epoch).
    """

    steps: int
    samples: int
    step_ms_p50: float | None
    step_ms_p95: float | None
    samples_per_s: float | None
    data_wait_frac: float | None
    compute_frac: float | None
    optimizer_frac: float | None
    epochs: int
    epoch_s_mean: float | None
    epoch_s_std: float | None


class StepTimes:
    """Per-step durations of a training loop, split into :data:`STEP_PARTS`, plus epoch wall times.

    Use laps inside the loop, or :meth:`record` for durations measured elsewhere::

        times.start_epoch()
        for x, y in loader:           # fetching counts toward "data"
            x, y = x.to(dev), y.to(dev)
            times.lap("data")
            loss = crit(model(x), y); loss.backward()
            times.lap("compute")
            opt.step(); opt.zero_grad()
            times.end_step(samples=len(x))   # laps "optimizer"
        times.end_epoch()

    Args:
        sync (callable, optional): called before each lap, e.g. :func:`device_sync`, so that
            asynchronous GPU work is charged to the part that queued it.
    """

    def __init__(self, sync: Sync | None = None) -> None:
        self.sync = sync or _no_sync
        self._steps: list[tuple[float, float, float]] = []
        self._samples: list[int] = []
        self._epochs: list[float] = []
        self._open = dict.fromkeys(STEP_PARTS, 0.0)
        self._last: float | None = None
        self._epoch_t0: float | None = None

    def start_epoch(self) -> None:
        """Start the epoch clock and the first step's data lap."""
        self.sync()
        self._epoch_t0 = self._last = time.perf_counter()
        self._open = dict.fromkeys(STEP_PARTS, 0.0)

    def lap(self, part: str) -> float:
        """Charge the time since the previous lap (or epoch start) to ``part`` of the open step."""
        if part not in STEP_PARTS:
            raise ValueError(f"part: expected one of {STEP_PARTS}, got {part!r}")
        if self._last is None:
            raise RuntimeError("StepTimes.lap: call start_epoch() first")
        self.sync()
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        self._open[part] += dt
        return dt

    def end_step(self, samples: int) -> None:
        """Lap ``"optimizer"`` and close the step that processed ``samples`` samples."""
        self.lap("optimizer")
        self.record(*(self._open[p] for p in STEP_PARTS), samples=samples)
        self._open = dict.fromkeys(STEP_PARTS, 0.0)

    def end_epoch(self) -> float:
        """Stop the epoch clock; returns the epoch's wall seconds."""
        if self._epoch_t0 is None:
            raise RuntimeError("StepTimes.end_epoch: call start_epoch() first")
        self.sync()
        seconds = time.perf_counter() - self._epoch_t0
        self.record_epoch(seconds)
        self._epoch_t0 = self._last = None
        return seconds

    def record(self, data_s: float, compute_s: float, optimizer_s: float, samples: int) -> None:
        """Add one step measured elsewhere (seconds per part)."""
        for name, v in (("data_s", data_s), ("compute_s", compute_s), ("optimizer_s", optimizer_s)):
            if not v >= 0:
                raise ValueError(f"{name}: expected a non-negative duration, got {v}")
        if not (isinstance(samples, int | np.integer) and samples > 0):
            raise ValueError(f"samples: expected a positive integer batch size, got {samples!r}")
        self._steps.append((float(data_s), float(compute_s), float(optimizer_s)))
        self._samples.append(int(samples))

    def record_epoch(self, seconds: float) -> None:
        """Add one epoch's wall time measured elsewhere."""
        if not seconds >= 0:
            raise ValueError(f"seconds: expected a non-negative epoch time, got {seconds}")
        self._epochs.append(float(seconds))

    def step_seconds(self) -> list[float]:
        """Every recorded step's total seconds (data + compute + optimizer), in order."""
        return [sum(parts) for parts in self._steps]

    def summary(self) -> StepSummary:
        """Percentiles, throughput and time shares over all recorded steps and epochs."""
        parts = np.asarray(self._steps, dtype=np.float64).reshape(-1, len(STEP_PARTS))
        step = parts.sum(axis=1)
        total = float(step.sum())
        samples = int(sum(self._samples))
        epochs = np.asarray(self._epochs, dtype=np.float64)
        fracs = [float(v) / total for v in parts.sum(axis=0)] if total > 0 else [None] * 3
        have = len(step) > 0
        return StepSummary(
            steps=len(step),
            samples=samples,
            step_ms_p50=float(np.percentile(step, 50)) * 1e3 if have else None,
            step_ms_p95=float(np.percentile(step, 95)) * 1e3 if have else None,
            samples_per_s=samples / total if total > 0 else None,
            data_wait_frac=fracs[0],
            compute_frac=fracs[1],
            optimizer_frac=fracs[2],
            epochs=len(epochs),
            epoch_s_mean=float(epochs.mean()) if len(epochs) else None,
            epoch_s_std=float(epochs.std(ddof=1))
            if len(epochs) > 1
            else 0.0
            if len(epochs)
            else None,
        )
