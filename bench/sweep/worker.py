"""One rank of one sweep point: instruments on, train, report what this rank measured.

Run by ``bench.run`` (one process per local rank) or directly under torchrun/srun/mpiexec. In
measured mode the ranks form a process group and rank 0 gathers every rank's report; in emulated
mode each process plays one rank of a larger world without communication and reports alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

import torch

from bench.sweep.faults import OOM_COUNTER_VAR, watch_parent
from bench.sweep.plan import SweepPoint
from pgti_core.dist.env import detect_env, device_for
from pgti_core.dist.group import distributed, gather_objects
from pgti_core.instruments.device import DeviceMemoryMonitor
from pgti_core.instruments.memory import HostMemorySampler
from pgti_core.train.run import World, run

EXIT_OOM = 3
EXIT_FAILED = 4
FAULT_VAR = "PGTI_FAULT"
CPUS_VAR = "PGTI_RANK_CPUS"  # set by bench.sweep.launch: the cores this rank runs on


def pin_to_cores() -> list[int]:
    """Pin every thread of this process to the cores in ``$PGTI_RANK_CPUS`` (if set) and use as
    many torch threads; returns the cores this process may run on.

    Every existing thread is pinned (``sched_setaffinity`` acts per thread); threads started
    later inherit the mask. Under a cluster launcher the variable is unset and its binding stays.
    """
    spec = os.environ.get(CPUS_VAR)
    if spec:
        cpus = {int(c) for c in spec.split(",")}
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except ProcessLookupError:  # a thread that ended meanwhile
                pass
        torch.set_num_threads(len(cpus))
    return sorted(os.sched_getaffinity(0))


def inject_fault(rank: int) -> None:
    """Testing hook: ``PGTI_FAULT=KIND[:RANK]`` makes rank RANK (default 0) fail on purpose.

    KIND is ``crash`` (an exception), ``oom`` (a MemoryError), ``kill`` (SIGKILL from anyone),
    ``oomkill`` (SIGKILL after bumping the counter file ``$PGTI_OOM_COUNTER``, as the kernel's
    OOM killer does) or ``hang`` (sleeps until the point's timeout). Lets tests prove that every
    failure becomes a status and the sweep goes on.
    """
    spec = os.environ.get(FAULT_VAR)
    if not spec:
        return
    kind, _, who = spec.partition(":")
    if rank != int(who or 0):
        return
    if kind == "crash":
        raise RuntimeError(f"injected crash on rank {rank}")
    if kind == "oom":
        raise MemoryError(f"injected out of memory on rank {rank}")
    if kind == "oomkill":
        counter = Path(os.environ[OOM_COUNTER_VAR])
        kills = int(counter.read_text().split()[-1])
        counter.write_text(f"oom_kill {kills + 1}\n")
    if kind in ("kill", "oomkill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        time.sleep(10**6)
    raise ValueError(f"{FAULT_VAR}: unknown fault {kind!r}; use crash, oom, kill, oomkill or hang")


def is_oom(exc: BaseException) -> bool:
    return (
        isinstance(exc, MemoryError | torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
    )


def first_line(exc: BaseException) -> str:
    """The error's first line, prefixed with its type, for the results row."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def measure_rank(
    point: SweepPoint, world: World, interval_s: float, dask_scheduler: str | None = None
) -> dict:
    """Train ``point`` as ``world``'s rank with the memory instruments running; returns the report."""
    device_probe = DeviceMemoryMonitor(world.device) if world.device.type == "cuda" else None
    sampler = HostMemorySampler(
        interval_s=interval_s, probes=(device_probe,) if device_probe else ()
    )
    sampler.start()
    try:
        inject_fault(world.data_rank)
        config = replace(point.run_config(), dask_scheduler=dask_scheduler)
        outcome = run(config, world, phase=sampler.phase)
    finally:
        host = sampler.stop()
    device = device_probe.stop() if device_probe else DeviceMemoryMonitor("cpu").stop()
    times = outcome.result.times.summary()
    return {
        "rank": world.data_rank,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "status": "ok",
        "summary": outcome.summary(),
        "times": asdict(times),
        "step_s": outcome.result.times.step_seconds(),  # emulation: the ranks' per-step pace
        "val_s": [r.val_s for r in outcome.result.epochs],
        "host_memory": asdict(host),
        "host_overhead_frac": host.overhead_frac,
        "device_memory": asdict(device),
    }


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, default=str))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    watch_parent()  # a rank never outlives the sweep that started it
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--point", required=True, help="JSON file with the sweep point")
    p.add_argument("--report-dir", required=True, help="where rank reports are written")
    p.add_argument("--dask-scheduler", default=None, help="standard-dask: scheduler to join")
    p.add_argument(
        "--emulate-rank",
        type=int,
        default=None,
        help="play this rank of the point's world (no process group)",
    )
    p.add_argument(
        "--interval", type=float, default=0.05, help="memory sampling interval in seconds"
    )
    args = p.parse_args(argv)
    cpus = pin_to_cores()
    point = SweepPoint(**json.loads(Path(args.point).read_text()))
    out = Path(args.report_dir)
    if args.emulate_rank is not None:
        rank = args.emulate_rank
        try:
            device = (
                torch.device("cuda", rank % torch.cuda.device_count())
                if point.device == "cuda"
                else torch.device("cpu")
            )
            world = World(data_rank=rank, data_world=point.world_size, device=device)
            report = measure_rank(point, world, args.interval, args.dask_scheduler)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a status
            return _fail(out, rank, exc)
        _write_json(out / f"rank{rank}.json", [dict(report, cpus=cpus)])
        return 0
    env = detect_env()
    try:
        with distributed(env, point.backend) as _:
            world = World(
                env.rank, env.world_size, device_for(env, point.backend), ddp=env.world_size > 1
            )
            report = measure_rank(point, world, args.interval, args.dask_scheduler)
            reports = gather_objects(dict(report, cpus=cpus))
    except BaseException as exc:  # noqa: BLE001
        return _fail(out, env.rank, exc)
    if env.rank == 0:
        _write_json(out / "rank0.json", reports)
    return 0


def _fail(out: Path, rank: int, exc: BaseException) -> int:
    oom = is_oom(exc)
    _write_json(
        out / f"rank{rank}.error.json",
        {
            "rank": rank,
            "status": "oom" if oom else "failed",
            "error": first_line(exc),
            "time": time.time(),
            "traceback": traceback.format_exc(),
        },
    )
    print(f"rank {rank}: {first_line(exc)}", file=sys.stderr)
    return EXIT_OOM if oom else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
