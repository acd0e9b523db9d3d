"""Host memory of one rank: a background sampler of the process tree's PSS, USS and RSS with
per-phase peaks, replacing PGT-I's 1 Hz RSS-of-one-process thread (which misses spikes and
double-counts shared pages when summed over ranks)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import psutil

S = TypeVar("S")

_THREAD_NAME = "pgti-host-memory"
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)


def merge_max(a: S | None, b: S) -> S:
    """Field-wise maximum of two samples of the same dataclass; ``None`` fields count as missing."""
    if a is None:
        return b
    out = {}
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        out[f.name] = y if x is None else x if y is None else max(x, y)
    return type(a)(**out)


class PeakBook(Generic[S]):
    """Overall and per-phase field-wise peaks of samples, safe to feed from two threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.overall: S | None = None
        self.phases: dict[str, S] = {}
        self.count = 0

    def add(self, sample: S, *phases: str | None) -> None:
        """Fold ``sample`` into the overall peak and into each named phase (``None`` is skipped)."""
        with self._lock:
            self.count += 1
            self.overall = merge_max(self.overall, sample)
            for name in {p for p in phases if p is not None}:
                self.phases[name] = merge_max(self.phases.get(name), sample)


def check_phase(name: str | None) -> str | None:
    """Validate a phase name: a non-empty string, or ``None`` for "outside any phase"."""
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"phase: expected a non-empty string or None, got {name!r}")
    return name


class PhaseProbe(Protocol):
    """Something the host sampler drives on its cadence, e.g. a device-memory monitor."""

    def start(self) -> None: ...

    def poll(self) -> None: ...

    def set_phase(self, name: str | None) -> None: ...

    def stop(self) -> object: ...


@dataclass(frozen=True)
class MemorySample:
    """Bytes of a process tree at one instant; ``pss``/``uss``/``footprint`` are ``None`` in
    RSS-only samples.

    ``footprint`` counts every resident page of the tree once, whoever else maps it: the sum of
    the processes' private pages (USS) plus the largest process's shared pages (RSS - USS; the
    tree's processes map the same runtime). Unlike summed PSS it does not shrink when a process
    outside the tree maps the same libraries, so it is what a node of ranks costs.
    """

    rss: int
    pss: int | None = None
    uss: int | None = None
    footprint: int | None = None


@dataclass
class HostMemoryReport:
    """What a :class:`HostMemorySampler` saw; all sizes in bytes, peaks absolute (not minus baseline).

    Args:
        baseline: tree sample taken at ``start()``, before the data is built.
        peak: field-wise peaks over the whole run.
        phases: field-wise peaks per phase name.
        vmhwm: the main process's VmHWM (kernel-exact peak RSS) at stop, ``None`` off Linux.
        vmhwm_since_start: whether VmHWM was reset at start (else it covers the process lifetime).
        samples: all samples taken (periodic and at phase boundaries).
        full_samples: samples that read PSS/USS (the rest read RSS only).
        interval_s: period of the sampler thread.
        pss_available: whether PSS could be read; if not, only RSS (and maybe USS) are reported.
        note: why PSS is missing, or empty.
        duration_s: wall seconds from start to stop.
        cpu_s: CPU seconds spent sampling, in the sampler thread and at phase boundaries.
        full_sample_us: mean CPU microseconds of one PSS/USS read of the tree.
        rss_sample_us: mean CPU microseconds of one RSS-only read of the tree.
    """

    baseline: MemorySample
    peak: MemorySample
    phases: dict[str, MemorySample]
    vmhwm: int | None
    vmhwm_since_start: bool
    samples: int
    full_samples: int
    interval_s: float
    pss_available: bool
    note: str
    duration_s: float
    cpu_s: float
    full_sample_us: float
    rss_sample_us: float | None

    @property
    def overhead_frac(self) -> float:
        """Sampling CPU time over wall time: an upper bound on the sampler's share of an epoch."""
        return self.cpu_s / self.duration_s if self.duration_s > 0 else 0.0

    def above_baseline(self, metric: str = "pss", phase: str | None = None) -> int | None:
        """Peak of ``metric`` (rss|pss|uss) over the run or one phase, minus the baseline."""
        if metric not in ("rss", "pss", "uss"):
            raise ValueError(f"metric: expected one of rss, pss, uss, got {metric!r}")
        if phase is not None and phase not in self.phases:
            raise ValueError(f"phase: {phase!r} was not recorded; have {sorted(self.phases)}")
        peak = getattr(self.peak if phase is None else self.phases[phase], metric)
        base = getattr(self.baseline, metric)
        return None if peak is None or base is None else peak - base


def read_vmhwm(pid: int) -> int | None:
    """VmHWM (peak resident set) of one process in bytes from ``/proc/<pid>/status``; ``None`` off Linux."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_vmhwm(pid: int) -> bool:
    """Reset the peak-RSS counter of ``pid`` (Linux ``clear_refs`` value 5); ``False`` if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class HostMemorySampler:
    """Samples the host memory of a process and its children every ``interval_s`` in a daemon thread.

    RSS of the tree is read every tick (~0.15 ms). PSS and USS come from
    ``/proc/<pid>/smaps_rollup`` (via psutil), whose cost grows with the mapped libraries (a few ms
    once torch is imported), so they are read on the ticks that keep the sampler's CPU time within
    ``max_overhead`` of the elapsed wall time, and always at start, at phase boundaries and at stop.
    VmHWM gives the exact peak RSS of the main process between samples.

    Args:
        interval_s (float, default 0.05): sampling period in seconds.
        pid (int, optional): root of the sampled tree; default this process.
        max_overhead (float, default 0.015): CPU budget of all sampling as a share of one core;
            periodic PSS reads are skipped while they would exceed it (boundary reads never are).
        children_every_s (float, default 1.0): how often the list of child processes is refreshed.
        reset_hwm (bool, default True): reset the main process's VmHWM at start (Linux only).
        probes (sequence, default ()): :class:`PhaseProbe` objects polled on the same cadence and
            told of phase changes, e.g. a :class:`~pgti_core.instruments.device.DeviceMemoryMonitor`.
    """

    def __init__(
        self,
        interval_s: float = 0.05,
        pid: int | None = None,
        max_overhead: float = 0.015,
        children_every_s: float = 1.0,
        reset_hwm: bool = True,
        probes: Sequence[PhaseProbe] = (),
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s: expected a positive period in seconds, got {interval_s}")
        if not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead: expected a share in (0, 1], got {max_overhead}")
        if not children_every_s > 0:
            raise ValueError(f"children_every_s: expected positive seconds, got {children_every_s}")
        self.interval_s = float(interval_s)
        self.max_overhead = float(max_overhead)
        self.children_every_s = float(children_every_s)
        self.reset_hwm = reset_hwm
        self.probes = tuple(probes)
        self._root = psutil.Process(os.getpid() if pid is None else pid)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._book: PeakBook[MemorySample] = PeakBook()
        self._phase: str | None = None
        self._phase_stack: list[str | None] = []
        self._procs: list[psutil.Process] = [self._root]
        self._children_at = 0.0
        self._error: BaseException | None = None
        self._pss_available = True
        self._note = ""
        self._cpu = 0.0
        self._full_cpu = 0.0
        self._full_n = 0
        self._rss_cpu = 0.0
        self._rss_n = 0
        self._t0 = 0.0
        self._baseline: MemorySample | None = None
        self._hwm_reset = False
        self.report: HostMemoryReport | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> HostMemorySampler:
        """Take the baseline synchronously, start the probes and the sampling thread."""
        if self._thread is not None:
            raise RuntimeError("HostMemorySampler.start: already started; use a new sampler")
        self._t0 = time.perf_counter()
        self._hwm_reset = self.reset_hwm and _reset_vmhwm(self._root.pid)
        self._baseline = self._sample_sync(None)
        if self._baseline.pss is None:
            self._pss_available = False
        for probe in self.probes:
            probe.start()
        self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> HostMemoryReport:
        """Stop and join the thread, take a last sample, stop the probes; idempotent."""
        if self.report is not None:
            return self.report
        if self._thread is None:
            raise RuntimeError("HostMemorySampler.stop: not started")
        self._stop.set()
        self._thread.join()
        try:
            if self._error is not None:
                raise RuntimeError("host memory sampler thread failed") from self._error
            self._sample_sync(self._phase)
        finally:  # the probes (NVML) are released whatever happened to the thread
            for probe in self.probes:
                probe.stop()
        self.report = HostMemoryReport(
            baseline=self._baseline,
            peak=self._book.overall,
            phases=dict(self._book.phases),
            vmhwm=read_vmhwm(self._root.pid),
            vmhwm_since_start=self._hwm_reset,
            samples=self._book.count,
            full_samples=self._full_n,
            interval_s=self.interval_s,
            pss_available=self._pss_available,
            note=self._note,
            duration_s=time.perf_counter() - self._t0,
            cpu_s=self._cpu,
            full_sample_us=1e6 * self._full_cpu / max(1, self._full_n),
            rss_sample_us=1e6 * self._rss_cpu / self._rss_n if self._rss_n else None,
        )
        return self.report

    def __enter__(self) -> HostMemorySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- phases --------------------------------------------------------------------------------

    @property
    def current_phase(self) -> str | None:
        """The phase new samples count toward, ``None`` outside any."""
        return self._phase

    def set_phase(self, name: str | None) -> None:
        """Switch the current phase; a sample taken now counts toward both the old and new phase.

        Each switch costs one full read of the tree (~5 ms with torch loaded): use it for coarse
        phases (prep, train, val per epoch), not per step.
        """
        check_phase(name)
        if self._thread is None or self.report is not None:
            raise RuntimeError("HostMemorySampler.set_phase: sampler is not running")
        old, self._phase = self._phase, name
        self._sample_sync(old, name)
        for probe in self.probes:
            probe.set_phase(name)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the samples of a ``with`` block to ``name``; restores the outer phase after."""
        self._phase_stack.append(self._phase)
        self.set_phase(name)
        try:
            yield
        finally:
            self.set_phase(self._phase_stack.pop())

    # -- sampling ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                elapsed = time.perf_counter() - self._t0
                last_full = self._full_cpu / max(1, self._full_n)
                full = self._pss_available and (
                    self._cpu + last_full <= self.max_overhead * elapsed
                )
                self._sample(full, self._phase)
                for probe in self.probes:
                    probe.poll()
        except BaseException as e:  # surfaced by stop(), never lost silently
            self._error = e

    def _sample_sync(self, *phases: str | None) -> MemorySample:
        """A full sample in the calling thread (start, phase boundaries, stop)."""
        return self._sample(True, *phases, refresh_children=True)

    def _sample(
        self, full: bool, *phases: str | None, refresh_children: bool = False
    ) -> MemorySample:
        c0 = time.thread_time()
        with self._lock:
            now = time.perf_counter()
            if refresh_children or now - self._children_at >= self.children_every_s:
                self._refresh_children(now)
            sample = self._read_tree(full and self._pss_available)
            spent = time.thread_time() - c0
            self._cpu += spent
            if sample.pss is not None:
                self._full_cpu += spent
                self._full_n += 1
            else:
                self._rss_cpu += spent
                self._rss_n += 1
        self._book.add(sample, *phases)
        return sample

    def _refresh_children(self, now: float) -> None:
        try:
            children = self._root.children(recursive=True)
        except _GONE:
            children = []
        self._procs = [self._root, *children]
        self._children_at = now

    def _read_tree(self, full: bool) -> MemorySample:
        rss, pss, uss = 0, 0 if full else None, 0 if full else None
        shared = 0
        for proc in self._procs:
            try:
                info = proc.memory_full_info() if full else proc.memory_info()
            except _GONE:
                continue  # a child that exited between listing and reading
            except (psutil.AccessDenied, OSError, NotImplementedError) as e:
                if not full:
                    continue
                self._pss_available = False
                self._note = f"PSS unreadable ({type(e).__name__}: {e}); RSS only"
                return self._read_tree(False)
            rss += info.rss
            if not full:
                continue
            p, u = getattr(info, "pss", None), getattr(info, "uss", None)
            if p is None:
                self._pss_available, self._note = False, "PSS not provided by this OS"
            pss = None if p is None or pss is None else pss + p
            uss = None if u is None or uss is None else uss + u
            if u is not None:
                shared = max(shared, info.rss - u)
        footprint = None if uss is None else uss + shared
        return MemorySample(rss=rss, pss=pss, uss=uss, footprint=footprint)
