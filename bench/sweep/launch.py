"""Run one sweep point in fresh processes: spawn its local ranks, watch them, collect reports.

Each rank is its own process group leader so that a crash, a timeout, Ctrl-C or SIGTERM can kill
the whole point (ranks and anything they started) and leave no orphans; a SIGKILL of the launcher
takes its ranks with it (:mod:`bench.sweep.faults`). A rank killed by SIGKILL is ``oom`` only if
the OOM killer's counter rose during the point, else ``killed``. Each rank is pinned to its own cores of this
process's affinity mask (:func:`rank_cpus`), and the host's foreign CPU load while the point ran
is measured (:mod:`bench.sweep.noise`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.sweep.faults import (
    PARENT_VAR,
    clean_stale_tempdirs,
    die_with_parent,
    oom_kills,
    owned_tempdir,
)
from bench.sweep.noise import ForeignLoad, NoiseMeter
from bench.sweep.plan import SweepPoint
from bench.sweep.worker import CPUS_VAR, EXIT_OOM
from pgti_core.dist.group import free_port
from pgti_core.instruments.memory import HostMemorySampler

GRACE_S = 5.0
# the node sampler's CPU budget (share of one core): PSS/USS of every process costs ~11 ms a read
NODE_OVERHEAD = 0.05


@dataclass
class PointResult:
    """What came back from one point: status, first error line, rank reports, wall time, and
    the node's peak footprint (this process, its ranks and any Dask workers, sampled together,
    every page counted once: :class:`~pgti_core.instruments.memory.MemorySample`)."""

    status: str
    error: str = ""
    reports: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    node_peak: int | None = None
    load: ForeignLoad | None = None  # the host's foreign CPU load while the point ran


def rank_cpus(local_rank: int, threads: int, cpus: list[int]) -> list[int]:
    """The cores of local rank ``local_rank``: ``threads`` consecutive cores of ``cpus`` of its
    own (rank r gets cores r*threads ..), wrapping round only when the ranks oversubscribe."""
    return [cpus[(local_rank * threads + i) % len(cpus)] for i in range(min(threads, len(cpus)))]


def _rank_env(point: SweepPoint, local_rank: int, port: int, threads: int) -> dict[str, str]:
    cpus = rank_cpus(local_rank, threads, sorted(os.sched_getaffinity(0)))
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(len(cpus)),
        PYTHONUNBUFFERED="1",
        **{PARENT_VAR: str(os.getpid())},
        **{CPUS_VAR: ",".join(map(str, cpus))},
    )
    if point.mode == "measured":
        env.update(
            RANK=str(local_rank),
            LOCAL_RANK=str(local_rank),
            WORLD_SIZE=str(point.world_size),
            LOCAL_WORLD_SIZE=str(point.local_ranks),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    else:
        for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
            env.pop(var, None)
    return env


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        p.wait()


def run_point(
    point: SweepPoint,
    *,
    timeout_s: float,
    threads_per_rank: int = 1,
    interval_s: float = 0.05,
    dask_workers: int = 2,
    dask_scheduler: str | None = None,
) -> PointResult:
    """Spawn ``point.local_ranks`` worker processes, wait, and classify the outcome.

    A ``standard-dask`` point joins ``dask_scheduler`` or gets a fresh ``LocalCluster`` of
    ``dask_workers`` workers for itself, shut down after the point whatever its outcome.
    """
    clean_stale_tempdirs()
    with owned_tempdir() as work:
        (work / "point.json").write_text(json.dumps(asdict(point)))
        port = free_port()
        procs: list[subprocess.Popen] = []
        meter = NoiseMeter().start()
        t0, kills_before = time.perf_counter(), oom_kills()
        cluster = client = None
        node = HostMemorySampler(interval_s=interval_s, max_overhead=NODE_OVERHEAD, reset_hwm=False)
        node.start()
        try:
            if point.strategy == "standard-dask" and dask_scheduler is None:
                from pgti_core.batching.dask_cluster import start_local_cluster

                cluster, client = start_local_cluster(n_workers=dask_workers)
                dask_scheduler = cluster.scheduler_address
            for r in range(point.local_ranks):
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.sweep.worker",
                    "--point",
                    str(work / "point.json"),
                    "--report-dir",
                    str(work),
                    "--interval",
                    str(interval_s),
                ]
                if point.mode == "emulated":
                    cmd += ["--emulate-rank", str(r)]
                if dask_scheduler:
                    cmd += ["--dask-scheduler", dask_scheduler]
                log = open(work / f"rank{r}.log", "wb")  # noqa: SIM115 - closed with the process
                procs.append(
                    subprocess.Popen(
                        cmd,
                        env=_rank_env(point, r, port, threads_per_rank),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=die_with_parent,
                    )
                )
                log.close()
            status, error = _wait(procs, timeout_s, t0)
            if status == "killed" and _oom_evidence(kills_before):
                status = "oom"
                error = "rank killed by SIGKILL; the kernel's OOM killer counted a kill"
        except BaseException:
            _kill(procs)
            raise
        finally:
            node_report = node.stop()
            if client is not None:
                from pgti_core.batching.dask_cluster import shutdown

                shutdown(client, cluster)
        wall = time.perf_counter() - t0
        load = meter.stop()  # every rank and Dask worker is reaped by now
        reports, errors = _collect(work, point)
        # a rank's own account beats a bare exit code, but a rank that died of a signal wrote
        # nothing: then its peers' errors are consequences and the signal is the cause
        if errors and not error:
            status, error = errors[0]["status"], errors[0]["error"]
        if status == "ok" and len(reports) != point.local_ranks:
            status, error = (
                "failed",
                f"{len(reports)} of {point.local_ranks} rank reports came back",
            )
        if status != "ok" and not error:
            error = _log_tail(work, point.local_ranks)
        return PointResult(
            status, error, reports if status == "ok" else [], wall, node_report.peak.footprint, load
        )


def _wait(procs: list[subprocess.Popen], timeout_s: float, t0: float) -> tuple[str, str]:
    """Poll until all ranks exit; first failure or the timeout kills the rest."""
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            bad = [c for c in codes if c != 0]
            return ("ok", "") if not bad else _classify(bad[0])
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            deadline = time.perf_counter() + GRACE_S  # let peers write their own error first
            while time.perf_counter() < deadline and any(p.poll() is None for p in procs):
                time.sleep(0.1)
            _kill(procs)
            return _classify(failed[0])
        if time.perf_counter() - t0 > timeout_s:
            _kill(procs)
            return "failed", f"timeout: point exceeded {timeout_s:g} s"
        time.sleep(0.1)


def _oom_evidence(before: int | None) -> bool:
    after = oom_kills()
    return before is not None and after is not None and after > before


def _classify(code: int) -> tuple[str, str]:
    if code == -signal.SIGKILL:
        return "killed", "rank killed by SIGKILL (no OOM-killer kill was counted)"
    if code == EXIT_OOM:
        return "oom", ""
    return "failed", "" if code > 0 else f"rank died of signal {-code}"


def _collect(work: Path, point: SweepPoint) -> tuple[list[dict], list[dict]]:
    reports: list[dict] = []
    for f in sorted(work.glob("rank*.json")):
        if not f.name.endswith(".error.json"):
            reports.extend(json.loads(f.read_text()))
    errors = [json.loads(f.read_text()) for f in sorted(work.glob("rank*.error.json"))]
    errors.sort(key=lambda e: e["time"])  # the first failure is the cause; peers fail after it
    reports.sort(key=lambda r: r["rank"])
    return reports, errors


def _log_tail(work: Path, ranks: int) -> str:
    for r in range(ranks):
        f = work / f"rank{r}.log"
        lines = (
            [ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
            if f.exists()
            else []
        )
        if lines:
            return lines[-1][:300]
    return ""
