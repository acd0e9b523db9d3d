"""Cluster mode of ``bench.run``: launched by torchrun/srun/mpiexec, every process is one rank.

The ranks form one process group for the whole sweep and run each point of the allocation's world
size in turn; rank 0 gathers every rank's report and appends the row. Memory instruments restart
per point (baseline and VmHWM reset), so peaks stay per point although processes are reused.
"""

from __future__ import annotations

import argparse
import gc
import sys

from bench.sweep.results import DONE_STATUSES, append_row, finished_keys
from bench.sweep.rows import failed_row, ok_row
from bench.sweep.worker import first_line, is_oom, measure_rank
from pgti_core.data.datasets import DatasetSpec
from pgti_core.dist.env import DistEnv, device_for
from pgti_core.dist.group import broadcast_object, distributed, gather_objects
from pgti_core.train.run import World


def cluster_sweep(
    args: argparse.Namespace, points: list, by_text: dict[str, DatasetSpec], run: dict, env: DistEnv
) -> int:
    """Run ``points`` (all of world size ``env.world_size``) as rank ``env.rank``; rank 0 writes rows."""
    with distributed(env, args.backend):
        done = (
            broadcast_object(
                None if args.force or env.rank else finished_keys(args.out, statuses=DONE_STATUSES)
            )
            or set()
        )
        device = device_for(env, points[0].backend) if points else None
        dask_scheduler = str(args.dask_scheduler_file) if args.dask_scheduler_file else None
        for i, point in enumerate(points):
            if point.key in done:
                continue
            world = World(env.rank, env.world_size, device, ddp=True)
            try:
                report = measure_rank(point, world, args.interval, dask_scheduler)
            except Exception as exc:  # noqa: BLE001 - recorded as the point's status
                status = "oom" if is_oom(exc) else "failed"
                report = {"rank": env.rank, "status": status, "error": first_line(exc)}
            reports = gather_objects(report)
            gc.collect()
            if env.rank != 0:
                continue
            ds = by_text[point.dataset]
            errors = [r for r in reports if r["status"] != "ok"]
            if errors:
                row = failed_row(point, ds, run, errors[0]["status"], errors[0]["error"], None)
            else:
                row = ok_row(point, ds, run, reports, predicted=None, comm=None)
            append_row(args.out, row)
            if not args.quiet:
                print(
                    f"[{i + 1}/{len(points)}] {point.label}: {row['status']}",
                    file=sys.stderr,
                    flush=True,
                )
    return 0
