"""Host memory sampler and device monitor: deliberate allocations show up in the right phase, the
process tree includes children, the thread stops, and missing PSS or CUDA degrade gracefully."""

import subprocess
import sys
import threading

import numpy as np
import psutil
import pytest
import torch

from pgti_core.instruments import DeviceMemoryMonitor, HostMemorySampler, MemorySample
from pgti_core.instruments.memory import merge_max

MB = 1 << 20

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PSS is Linux-only")


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pgti-host-memory"]


@linux_only
def test_allocation_counts_in_its_phase_only():
    sampler = HostMemorySampler(interval_s=0.01).start()
    with sampler.phase("alloc"):
        block = np.ones(200 * MB // 8)  # written, so resident
        assert block[-1] == 1.0
    del block
    with sampler.phase("idle"):
        pass
    report = sampler.stop()
    assert report.pss_available and report.note == ""
    assert set(report.phases) == {"alloc", "idle"}
    assert report.above_baseline("pss", "alloc") >= 150 * MB
    assert report.above_baseline("uss", "alloc") >= 150 * MB
    assert report.above_baseline("pss", "idle") < 100 * MB
    assert report.above_baseline("pss") >= 150 * MB  # overall peak includes the phase
    assert report.vmhwm >= report.baseline.rss + 150 * MB
    assert report.full_samples >= 5  # baseline, 4 boundaries, stop
    assert report.samples >= report.full_samples


@linux_only
def test_child_process_memory_is_in_the_tree():
    sampler = HostMemorySampler(interval_s=0.01).start()
    code = (
        "import sys, time, numpy as np\n"
        f"a = np.ones({150 * MB // 8}); print('ready', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with sampler.phase("child"):
            pass
    finally:
        child.kill()
        child.wait()
    report = sampler.stop()
    assert report.above_baseline("pss", "child") >= 140 * MB
    assert report.above_baseline("rss", "child") >= 140 * MB


def test_stop_joins_the_thread_and_is_idempotent():
    sampler = HostMemorySampler(interval_s=0.005)
    with sampler:
        assert len(_sampler_threads()) == 1
        sampler.set_phase("train")
        sampler.set_phase("val")
    report = sampler.report
    assert not _sampler_threads()
    assert sampler.stop() is report
    assert set(report.phases) == {"train", "val"}
    assert report.interval_s == 0.005
    assert report.duration_s >= 0 and report.cpu_s >= 0 and report.overhead_frac >= 0


def test_nested_phases_restore_the_outer_phase():
    sampler = HostMemorySampler().start()
    with sampler.phase("epoch"):
        with sampler.phase("train"):
            pass
        assert sampler.current_phase == "epoch"
    assert sampler.current_phase is None
    assert set(sampler.stop().phases) == {"epoch", "train"}


def test_missing_pss_falls_back_to_rss(monkeypatch):
    def refuse(self):
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "memory_full_info", refuse)
    sampler = HostMemorySampler(interval_s=0.005).start()
    with sampler.phase("train"):
        pass
    report = sampler.stop()
    assert not report.pss_available and "AccessDenied" in report.note
    assert report.peak.pss is None and report.peak.rss > 0
    assert report.phases["train"].rss > 0
    assert report.above_baseline("pss") is None
    assert report.above_baseline("rss") >= 0


def test_thread_failure_is_raised_by_stop():
    class Broken:
        def start(self):
            pass

        def poll(self):
            raise OSError("probe broke")

        def set_phase(self, name):
            pass

        def stop(self):
            pass

    sampler = HostMemorySampler(interval_s=0.001, probes=[Broken()]).start()
    sampler._thread.join(timeout=10)  # the failing poll ends the thread
    with pytest.raises(RuntimeError, match="sampler thread failed"):
        sampler.stop()


def test_bad_arguments():
    with pytest.raises(ValueError, match="interval_s"):
        HostMemorySampler(interval_s=0)
    with pytest.raises(ValueError, match="max_overhead"):
        HostMemorySampler(max_overhead=1.5)
    sampler = HostMemorySampler()
    with pytest.raises(RuntimeError, match="not running"):
        sampler.set_phase("train")
    sampler.start()
    with pytest.raises(ValueError, match="phase"):
        sampler.set_phase("")
    report = sampler.stop()
    with pytest.raises(ValueError, match="metric"):
        report.above_baseline("vms")
    with pytest.raises(ValueError, match="phase"):
        report.above_baseline("rss", "nope")


def test_merge_max_ignores_missing_fields():
    a = MemorySample(rss=5, pss=None, uss=3)
    b = MemorySample(rss=4, pss=7, uss=None)
    assert merge_max(a, b) == MemorySample(rss=5, pss=7, uss=3)
    assert merge_max(None, b) == b


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-GPU path")
def test_device_monitor_without_cuda():
    monitor = DeviceMemoryMonitor()
    assert not monitor.available
    with HostMemorySampler(interval_s=0.005, probes=[monitor]) as sampler:
        with sampler.phase("train"):
            pass
    report = monitor.report
    assert report is not None and monitor.stop() is report
    assert not report.available and report.reason == "no CUDA device"
    assert report.device is None and report.peak.allocated is None and report.peak.nvml is None
    assert report.above_baseline("allocated") is None
    assert report.above_baseline("nvml") is None


def test_device_monitor_on_cpu_device():
    monitor = DeviceMemoryMonitor("cpu")
    monitor.start()
    monitor.set_phase("train")
    monitor.poll()
    report = monitor.stop()
    assert not report.available and report.peak.reserved is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_monitor_sees_an_allocation_on_its_own_device():
    index = torch.cuda.device_count() - 1  # not GPU 0 where there are several
    monitor = DeviceMemoryMonitor(index)
    with HostMemorySampler(interval_s=0.01, probes=[monitor]) as sampler:
        with sampler.phase("alloc"):
            block = torch.ones(256 * MB // 4, device=f"cuda:{index}")
            torch.cuda.synchronize(index)
            monitor.poll()
        del block
        torch.cuda.empty_cache()
        with sampler.phase("idle"):
            pass
    report = monitor.report
    assert report.available and report.device == f"cuda:{index}"
    assert report.above_baseline("allocated", "alloc") >= 256 * MB
    assert report.above_baseline("reserved", "alloc") >= 256 * MB
    assert report.above_baseline("allocated", "idle") < 256 * MB
    if report.peak.nvml is not None:
        assert report.above_baseline("nvml", "alloc") >= 200 * MB


def _mapping_process(path) -> subprocess.Popen:
    """A process that maps ``path`` read-only, touches every page, then idles."""
    code = (
        "import mmap, sys\n"
        "f = open(sys.argv[1], 'rb')\n"
        "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
        "total = sum(m[i] for i in range(0, len(m), mmap.PAGESIZE))\n"
        "print('up', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "up"
    return proc


def _tree_sample(pid: int) -> MemorySample:
    return HostMemorySampler(pid=pid, reset_hwm=False).start().stop().baseline


@linux_only
def test_footprint_ignores_processes_outside_the_tree(tmp_path):
    """Outside processes mapping the tree's pages shrink its PSS, not its footprint (every page
    once): the node figure of a sweep does not depend on its neighbours. The pages are a file
    only this test maps, so other work on the host cannot move the numbers."""
    path = tmp_path / "pages.bin"
    path.write_bytes(np.random.default_rng(0).bytes(32 * MB))
    inside = _mapping_process(path)
    outside: list[subprocess.Popen] = []
    try:
        alone = _tree_sample(inside.pid)
        assert alone.footprint == alone.rss  # one process: each resident page counted once
        outside = [_mapping_process(path) for _ in range(2)]
        crowded = _tree_sample(inside.pid)
    finally:
        for proc in [inside, *outside]:
            proc.kill()
            proc.wait()
    pss_drop = alone.pss - crowded.pss
    assert pss_drop > 16 * MB, (alone, crowded)  # 32 MiB now split three ways: ~21 MiB less
    assert abs(crowded.footprint - alone.footprint) < pss_drop / 4, (alone, crowded)
