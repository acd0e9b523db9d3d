"""Device memory of one rank's own GPU: the caching allocator's exact peaks per phase and NVML's
used memory of that device (found by UUID, so ``CUDA_VISIBLE_DEVICES`` is honoured), where
PGT-I read NVML on GPU 0 for every rank."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import ModuleType

import torch

from pgti_core.instruments.memory import PeakBook, check_phase


@contextmanager
def nvml() -> Iterator[tuple[ModuleType | None, str]]:
    """Yield ``(pynvml, "")`` with NVML initialised, or ``(None, reason)`` when it cannot be."""
    try:
        import pynvml
    except ImportError:
        yield None, "pynvml (nvidia-ml-py) not installed"
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:  # NVMLError_LibraryNotFound on machines without a driver
        yield None, f"NVML unavailable: {e}"
        return
    try:
        yield pynvml, ""
    finally:
        pynvml.nvmlShutdown()


def nvml_handle(pynvml: ModuleType, device: torch.device) -> object:
    """NVML handle of a torch CUDA device, matched by UUID (GPU or MIG instance)."""
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    candidates = [uuid] if uuid.startswith(("GPU-", "MIG-")) else [f"GPU-{uuid}", f"MIG-{uuid}"]
    for c in candidates:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(c)
        except pynvml.NVMLError:
            continue
    raise LookupError(f"no NVML device with UUID {uuid}")


@dataclass(frozen=True)
class DeviceSample:
    """Device bytes: allocator peak allocated/reserved and NVML used (``None`` where not read)."""

    allocated: int | None = None
    reserved: int | None = None
    nvml: int | None = None


@dataclass
class DeviceMemoryReport:
    """What a :class:`DeviceMemoryMonitor` saw; sizes in bytes, peaks absolute.

    Args:
        available: whether a CUDA device was measured; if not, every size is ``None``.
        reason: why not, or why NVML is missing; empty when all was read.
        device: the torch device measured, e.g. ``"cuda:1"``.
        name: the device's name.
        baseline: sample at ``start()`` (after the CUDA context exists, before the data).
        peak: field-wise peaks over the run.
        phases: field-wise peaks per phase.
        samples: NVML reads plus phase-boundary reads.
    """

    available: bool
    reason: str
    device: str | None = None
    name: str | None = None
    baseline: DeviceSample = DeviceSample()
    peak: DeviceSample = DeviceSample()
    phases: dict[str, DeviceSample] | None = None
    samples: int = 0

    def above_baseline(self, metric: str = "allocated", phase: str | None = None) -> int | None:
        """Peak of ``metric`` (allocated|reserved|nvml) over the run or one phase, minus the baseline."""
        if metric not in ("allocated", "reserved", "nvml"):
            raise ValueError(f"metric: expected one of allocated, reserved, nvml, got {metric!r}")
        phases = self.phases or {}
        if phase is not None and phase not in phases:
            raise ValueError(f"phase: {phase!r} was not recorded; have {sorted(phases)}")
        peak = getattr(self.peak if phase is None else phases[phase], metric)
        base = getattr(self.baseline, metric)
        return None if peak is None or base is None else peak - base


class DeviceMemoryMonitor:
    """Peak device memory of one CUDA device, per phase; a probe for the host sampler or standalone.

    Allocator peaks (``torch.cuda.max_memory_allocated/reserved``) are exact: they are read and
    reset at each phase boundary. NVML "used" covers every process on the device (CUDA contexts
    included) and is sampled on each ``poll()``. Without CUDA every call is a no-op and the report
    says why.

    Args:
        device (torch.device | str | int, optional): the rank's device; default the current CUDA
            device (set it with ``torch.cuda.set_device(local_rank)`` first).
    """

    def __init__(self, device: torch.device | str | int | None = None) -> None:
        self._lock = threading.Lock()
        self._book: PeakBook[DeviceSample] = PeakBook()
        self._phase: str | None = None
        self._handle: object | None = None
        self._pynvml: ModuleType | None = None
        self._stack = ExitStack()
        self._baseline = DeviceSample()
        self.report: DeviceMemoryReport | None = None
        self.reason = ""
        if not torch.cuda.is_available():
            self.device, self.reason = None, "no CUDA device"
            return
        dev = torch.device("cuda", torch.cuda.current_device()) if device is None else device
        dev = torch.device(f"cuda:{dev}" if isinstance(dev, int) else dev)
        if dev.type != "cuda":
            self.device, self.reason = None, f"device {dev} is not a CUDA device"
            return
        self.device = torch.device(
            "cuda", torch.cuda.current_device() if dev.index is None else dev.index
        )

    @property
    def available(self) -> bool:
        return self.device is not None

    def start(self) -> None:
        """Create the CUDA context on the device, open NVML and take the baseline."""
        if not self.available:
            return
        torch.cuda.synchronize(self.device)  # the context's memory belongs to the baseline
        self._pynvml, nvml_reason = self._stack.enter_context(nvml())
        if self._pynvml is not None:
            try:
                self._handle = nvml_handle(self._pynvml, self.device)
            except LookupError as e:
                nvml_reason = str(e)
        self.reason = nvml_reason
        self._baseline = DeviceSample(
            allocated=torch.cuda.memory_allocated(self.device),
            reserved=torch.cuda.memory_reserved(self.device),
            nvml=self._nvml_used(),
        )
        self._book.add(self._baseline)
        torch.cuda.reset_peak_memory_stats(self.device)

    def poll(self) -> None:
        """Read NVML used memory into the current phase (cheap; safe from the sampler thread)."""
        if self._handle is None:
            return
        with self._lock:
            self._book.add(DeviceSample(nvml=self._nvml_used()), self._phase)

    def set_phase(self, name: str | None) -> None:
        """Close the current phase with the allocator's peaks, reset them, and switch to ``name``."""
        check_phase(name)
        if self.available:
            with self._lock:
                self._close_phase(also=name)
        self._phase = name

    def stop(self) -> DeviceMemoryReport:
        """Close the last phase, release NVML and build the report; idempotent."""
        if self.report is not None:
            return self.report
        if not self.available:
            self.report = DeviceMemoryReport(available=False, reason=self.reason)
            return self.report
        with self._lock:
            self._close_phase(also=None)
            self._handle = None
        self._stack.close()
        self.report = DeviceMemoryReport(
            available=True,
            reason=self.reason,
            device=str(self.device),
            name=torch.cuda.get_device_name(self.device),
            baseline=self._baseline,
            peak=self._book.overall or DeviceSample(),
            phases=dict(self._book.phases),
            samples=self._book.count,
        )
        return self.report

    def _close_phase(self, also: str | None) -> None:
        used = self._nvml_used()
        peaks = DeviceSample(
            allocated=torch.cuda.max_memory_allocated(self.device),
            reserved=torch.cuda.max_memory_reserved(self.device),
            nvml=used,
        )
        self._book.add(peaks, self._phase)
        if used is not None and also is not None:
            self._book.add(DeviceSample(nvml=used), also)
        torch.cuda.reset_peak_memory_stats(self.device)

    def _nvml_used(self) -> int | None:
        if self._handle is None:
            return None
        return int(self._pynvml.nvmlDeviceGetMemoryInfo(self._handle).used)
