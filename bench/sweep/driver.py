"""``python -m bench.run``: the local and cluster drivers of a sweep (plan, guard, run, append rows).

Each point runs in fresh processes (clean memory peaks), is recorded with its status whatever
happens (ok, oom, killed, failed, skipped), and a re-run of the same command resumes where it stopped.
The command line lives in :mod:`bench.sweep.args`, the printing in :mod:`bench.sweep.console`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import psutil
from tqdm import tqdm

from bench.cli import one_line_data_errors
from bench.perf.project import CommModel, load_calibration
from bench.perf.validate import projection_errors
from bench.sweep.args import parse_args
from bench.sweep.baseline import measure_rank_baseline
from bench.sweep.cluster import cluster_sweep
from bench.sweep.console import point_line, print_plan
from bench.sweep.faults import Stop, sigterm_as_interrupt
from bench.sweep.guard import guard_point, parent_resident
from bench.sweep.launch import run_point
from bench.sweep.plan import (
    SweepPoint,
    cpu_rank_cap,
    plan_points,
    predict_node_peak,
    with_validation,
)
from bench.sweep.repeats import annotate, previous_epochs, repeat_groups, repeat_rule, run_repeats
from bench.sweep.results import (
    DONE_STATUSES,
    append_row,
    finished_keys,
    new_run_id,
    read_results,
)
from bench.sweep.rows import failed_row, ok_row
from pgti_core.data.datasets import DatasetSpec, load_dataset
from pgti_core.data.errors import first_line
from pgti_core.dist.env import DistEnv, detect_env
from pgti_core.instruments.system import describe_system, write_system_json
from pgti_core.progress import progress, set_quiet

MEMORY_MARGIN = 0.9


def prepare_files(datasets: list[DatasetSpec], seed: int) -> None:
    """Convert real files into the cache (and verify them) before any point, so a file that
    cannot give a meaningful series stops the sweep with one line instead of failing every
    point; raises :class:`~pgti_core.data.errors.DataError`."""
    for ds in datasets:
        if ds.is_file:
            load_dataset(ds, seed=seed)  # converted and verified; the mapping is dropped


def gpus_here() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def comm_model(args: argparse.Namespace, quiet: bool) -> CommModel:
    """The all-reduce model for emulated points: given, calibrated before, or calibrated now."""
    if args.alpha is not None:
        return CommModel(alpha_s=args.alpha, beta_Bps=args.beta, source="given")
    path = args.calibration or args.out.parent / "calibration.json"
    if not path.is_file():
        from bench.perf.calibrate import calibrate
        from bench.perf.project import save_calibration

        if not quiet:
            print(
                f"calibrating all-reduce on this host for emulated points -> {path}",
                file=sys.stderr,
            )
        save_calibration(calibrate(ranks=2), path)
    return load_calibration(path)


def run_info(n_gpus: int, threads_per_rank: int = 1) -> dict:
    """Fields shared by every row of this invocation (run id, git sha, device name, cores)."""
    system = describe_system()
    return {
        "run_id": new_run_id(),
        "git_sha": system.get("git_sha"),
        "cores": len(os.sched_getaffinity(0)),
        "threads_per_rank": threads_per_rank,
        "device_name": (system.get("gpus") or [{}])[0].get("name")
        if n_gpus
        else f"cpu: {system.get('cpu_model', 'unknown')}",
    }


@one_line_data_errors("python -m bench.run")
def main(argv: list[str] | None = None) -> int:
    args, datasets = parse_args(argv)
    if args.quiet:
        set_quiet()  # the ranks and the dataset builds they trigger too
    env = detect_env()
    if env.world_size > 1:
        return main_cluster(args, datasets, env)
    if not args.dry_run:
        prepare_files(datasets, args.seed)
    baseline = measure_rank_baseline()
    avail = psutil.virtual_memory().available
    n_gpus = gpus_here()
    rpn = args.ranks_per_node or (n_gpus or 4)
    memory_cap = args.max_local_ranks or max(1, min(64, int(0.5 * avail // baseline)))
    cores = len(os.sched_getaffinity(0))
    max_local = cpu_rank_cap(memory_cap, cores, args.threads_per_rank, args.oversubscribe)
    rule = repeat_rule(args)
    points = plan_points(
        datasets,
        args.strategies,
        args.models,
        args.gpus,
        repeats=rule.cap,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        max_steps=args.max_steps,
        ranks_per_node=rpn,
        max_local_ranks=max_local,
        gpus_here=n_gpus,
        backend=args.backend,
        dask_contiguous=args.dask_contiguous,
        diffusion=args.diffusion,
        host_copy=args.host_copy,
        max_eval_steps=args.max_eval_steps,
    )
    points = with_validation(points, n_gpus or max_local)
    by_label = {d.text: d for d in datasets}
    budget = int(avail * MEMORY_MARGIN)
    if args.dry_run:  # nothing built or probed: the runtime stands in for runtime + model
        parent = parent_resident()
        predicted = {
            p.key: predict_node_peak(p, by_label[p.dataset], runtime=baseline, parent=parent)
            for p in points
        }
        print_plan(points, predicted, budget, baseline)
        return 0
    damaged: list[str] = []
    done = set() if args.force else finished_keys(args.out, DONE_STATUSES, damaged)
    for line in damaged[:10]:
        print(f"damaged row ignored, its point re-runs: {line}", file=sys.stderr)
    previous = {k: v for k, v in previous_epochs(args.out).items() if k in done}
    todo = [p for p in points if p.key not in previous]
    try:
        comm = comm_model(args, args.quiet) if any(p.mode == "emulated" for p in todo) else None
    except ValueError as exc:  # a damaged default calibration: nothing has run or been written
        print(f"python -m bench.run: error: {first_line(exc)}", file=sys.stderr)
        return 2
    run = run_info(n_gpus, args.threads_per_rank)
    if todo:  # one system description per invocation that runs something
        write_system_json(
            args.out.with_name(f"{args.out.stem}.{run['run_id']}.system.json"),
            extra={"rank_baseline_uss": baseline, "points": len(todo)},
        )
    if not args.quiet:
        print(
            f"{len(points)} points, {len(points) - len(todo)} already in {args.out}, "
            f"{len(todo)} to run at most (idle rank {baseline / 2**20:.0f} MiB private, {max_local} local "
            f"ranks at most on {cores} usable cores{', oversubscribed' if args.oversubscribe else ''})",
            file=sys.stderr,
        )
    bar = progress(total=len(todo), quiet=args.quiet, unit="point", leave=True)
    statuses: list[str] = []

    def measure(point: SweepPoint, values: list[float]) -> float | None:
        bar.set_description(point.label)
        row = run_one(point, by_label[point.dataset], run, baseline, budget, args, comm)
        annotate(row, values, rule)
        if point.validation:
            row.update(projection_errors(row, read_results(args.out)))
        append_row(args.out, row)
        statuses.append(row["status"])
        bar.update()
        if not args.quiet:
            tqdm.write(point_line(point, row))
        return row["epoch_s_mean"] if row["status"] == "ok" else None

    try:
        with sigterm_as_interrupt():
            for group in repeat_groups(points):
                run_repeats(group, rule, previous, measure)
    except KeyboardInterrupt as exc:
        bar.close()
        print(
            f"interrupted: finished points are kept in {args.out}; re-run to resume",
            file=sys.stderr,
        )
        return 128 + (exc.args[0] if isinstance(exc, Stop) else signal.SIGINT)
    bar.close()
    if not args.quiet:
        print(f"wrote {len(statuses)} rows to {args.out}", file=sys.stderr)
    if not args.no_plots and args.out.exists():
        draw_plots(args.out, args.plots, args.quiet)
    if statuses and all(s in ("failed", "killed") for s in statuses):
        print(f"every point failed; see the error column of {args.out}", file=sys.stderr)
        return 1
    return 0


def draw_plots(csv: Path, out_dir: Path, quiet: bool) -> None:
    """The sweep's speedup, efficiency and memory figures and summary.md, from the whole CSV."""
    from bench.report.plot import make_plots

    written = make_plots(read_results(csv), out_dir)
    if not quiet:
        scaling = [p.name for p in written if p.suffix == ".png" and p.name.startswith("scaling")]
        memory = [p.name for p in written if p.suffix == ".png" and p.name.startswith("memory")]
        print(
            f"plots in {out_dir}/: speedup and efficiency {', '.join(scaling) or 'none'}; "
            f"memory {', '.join(memory) or 'none'}; summary.md",
            file=sys.stderr,
        )


def main_cluster(args: argparse.Namespace, datasets: list[DatasetSpec], env: DistEnv) -> int:
    """Under torchrun/srun/mpiexec: this process is rank ``env.rank`` of the allocation's world."""
    if env.world_size not in args.gpus and env.is_main:
        print(
            f"--gpus {args.gpus}: running the allocation's world size {env.world_size}",
            file=sys.stderr,
        )
    n_gpus = gpus_here()
    points = plan_points(
        datasets,
        args.strategies,
        args.models,
        [env.world_size],
        repeats=repeat_rule(args).cap,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        max_steps=args.max_steps,
        ranks_per_node=env.local_world_size,
        max_local_ranks=env.world_size,
        gpus_here=0,
        backend=args.backend,
        dask_contiguous=args.dask_contiguous,
        diffusion=args.diffusion,
        # a shared copy lives in the data cache, which may be one file system for all nodes
        host_copy="private" if args.host_copy == "auto" else args.host_copy,
        max_eval_steps=args.max_eval_steps,
    )
    device = "cuda" if n_gpus else "cpu"
    backend = args.backend or ("nccl" if n_gpus else "gloo")
    points = [
        replace(
            p,
            ranks_per_node=env.local_world_size,
            local_ranks=env.local_world_size,
            device=device,
            backend=backend,
        )
        for p in points
    ]
    run = run_info(n_gpus, args.threads_per_rank)
    if env.is_main:
        write_system_json(
            args.out.with_name(f"{args.out.stem}.{run['run_id']}.system.json"),
            extra={"launcher": env.launcher, "world_size": env.world_size},
        )
    return cluster_sweep(args, points, {d.text: d for d in datasets}, run, env)


def run_one(
    point: SweepPoint,
    ds: DatasetSpec,
    run: dict,
    baseline: int,
    budget: int,
    args: argparse.Namespace,
    comm: CommModel | None,
) -> dict:
    """Guard (probe + prediction), then run or skip one point, and return its row."""
    guard = guard_point(point, ds, budget, baseline, threads=args.threads_per_rank)
    if guard.status != "run":
        return failed_row(point, ds, run, guard.status, guard.error, guard.predicted, guard.probe)
    res = run_point(
        point,
        timeout_s=args.timeout,
        interval_s=args.interval,
        threads_per_rank=args.threads_per_rank,
        dask_workers=args.dask_workers,
        dask_scheduler=str(args.dask_scheduler_file) if args.dask_scheduler_file else None,
    )
    if res.status != "ok":
        row = failed_row(point, ds, run, res.status, res.error, guard.predicted, guard.probe)
    else:
        row = ok_row(
            point,
            ds,
            run,
            res.reports,
            predicted=guard.predicted,
            comm=comm,
            probe=guard.probe,
            node_peak=res.node_peak,
        )
    if res.load is not None:
        row.update(host_foreign_cpu_frac=res.load.foreign_frac, noisy=res.load.noisy)
        if res.load.noisy:
            row["notes"] = "; ".join(
                n
                for n in (
                    row.get("notes"),
                    f"noisy: other work took {res.load.foreign_frac:.0%} of the cores' time",
                )
                if n
            )
    return row
