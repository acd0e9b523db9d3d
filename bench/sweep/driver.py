"""``python -m bench.run``: sweep world sizes x datasets x strategies x models, one CSV row a point.

Each point runs in fresh processes (clean memory peaks), is recorded with its status whatever
happens (ok, oom, failed, skipped), and a re-run of the same command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import psutil
from tqdm import tqdm

from bench.cli import int_list, names, positive_float, positive_int
from bench.perf.project import CommModel, load_calibration
from bench.sweep.baseline import measure_rank_baseline
from bench.sweep.cluster import cluster_sweep
from bench.sweep.guard import guard_point, parent_pss
from bench.sweep.launch import run_point
from bench.sweep.plan import SweepPoint, plan_points, predict_node_peak
from bench.sweep.results import DONE_STATUSES, append_row, check_writable, finished_keys, new_run_id
from bench.sweep.rows import failed_row, ok_row
from pgti_core.batching.host_copy import HOST_COPIES
from pgti_core.batching.registry import ALL_STRATEGIES, strategy_class
from pgti_core.data.datasets import DatasetSpec, parse_dataset_spec
from pgti_core.dist.env import DistEnv, detect_env
from pgti_core.instruments.system import describe_system, write_system_json
from pgti_core.models.registry import MODELS

DEFAULTS = {
    "gpus": "1,2,4",
    "datasets": "metr-la",
    "strategies": "standard,index,partitioned",
    "models": "dcrnn-paper",
}
MEMORY_MARGIN = 0.9


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--gpus",
        type=int_list,
        default=DEFAULTS["gpus"],
        help="world sizes to sweep (ranks; GPUs on a GPU host)",
    )
    p.add_argument(
        "--datasets",
        default=DEFAULTS["datasets"],
        help="comma-separated profiles (metr-la, pems-bay, ...), 'name:nodes=..,steps=..' overrides, or real-file specs",
    )
    p.add_argument(
        "--strategies",
        type=names(ALL_STRATEGIES),
        default=DEFAULTS["strategies"],
        help="batching strategies",
    )
    p.add_argument("--models", type=names(MODELS), default=DEFAULTS["models"], help="models")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="samples per rank per step (default: the dataset profile's)",
    )
    p.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="cap on training steps per epoch (default: whole epoch)",
    )
    p.add_argument(
        "--max-eval-steps",
        type=positive_int,
        default=None,
        help="cap on validation and test batches (default: the whole split)",
    )
    p.add_argument("--repeats", type=positive_int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--ranks-per-node",
        type=positive_int,
        default=None,
        help="ranks per node of the emulated/cluster world (default: GPUs here, else 4)",
    )
    p.add_argument(
        "--max-local-ranks",
        type=positive_int,
        default=None,
        help="most CPU ranks run for real here (default: from free memory and the measured idle-rank cost)",
    )
    p.add_argument(
        "--backend",
        choices=("gloo", "nccl"),
        default=None,
        help="process-group backend (default: nccl on GPUs, else gloo)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/sweep.csv"),
        help="results CSV (appended, resumable)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=1800.0,
        help="seconds per point before it is killed",
    )
    p.add_argument(
        "--interval", type=positive_float, default=0.05, help="memory sampling interval in seconds"
    )
    p.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="all-reduce calibration JSON from bench.calibrate (default: <out dir>/calibration.json, made if missing)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="all-reduce latency in s (with --beta, instead of a calibration)",
    )
    p.add_argument(
        "--beta",
        type=positive_float,
        default=None,
        help="all-reduce bandwidth in bytes/s (with --alpha)",
    )
    p.add_argument(
        "--dask-workers",
        type=positive_int,
        default=2,
        help="standard-dask: workers of the LocalCluster started for each point",
    )
    p.add_argument(
        "--dask-scheduler-file",
        type=Path,
        default=None,
        help="standard-dask: join this cluster (dask scheduler --scheduler-file) instead",
    )
    p.add_argument(
        "--dask-contiguous",
        action="store_true",
        help="standard-dask: contiguous blocks per rank, only batch order shuffled (artifact variant)",
    )
    p.add_argument(
        "--threads-per-rank",
        type=positive_int,
        default=1,
        help="torch/OpenMP threads per local rank (a rank plays one device; more threads per rank "
        "on a shared host collapse under contention)",
    )
    p.add_argument(
        "--host-copy",
        choices=("auto", *HOST_COPIES),
        default="auto",
        help="index: one normalized copy per rank (private) or per node, mapped by its local ranks "
        "(shared); auto shares when a node runs several ranks",
    )
    p.add_argument("--force", action="store_true", help="re-run points already in the CSV")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan with predicted memory and modes; run nothing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-point lines")
    return p


def split_dataset_list(text: str) -> list[str]:
    """Split on ',' or ';', keeping ``key=value`` options with the spec before them.

    ``metr-la:nodes=50,steps=2000,pems-bay`` -> ``["metr-la:nodes=50,steps=2000", "pems-bay"]``.
    """
    specs: list[str] = []
    for token in (t.strip() for t in text.replace(";", ",").split(",")):
        if not token:
            continue
        if specs and "=" in token and ":" not in token:
            specs[-1] += "," + token
        else:
            specs.append(token)
    return specs


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[DatasetSpec]]:
    """Parse and validate; every usage error exits 2 through ``parser.error`` with one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        datasets = [parse_dataset_spec(t) for t in split_dataset_list(args.datasets)]
    except ValueError as exc:
        parser.error(f"--datasets: {exc}")
    if not datasets:
        parser.error("--datasets: give at least one dataset")
    if (args.alpha is None) != (args.beta is None):
        parser.error("--alpha and --beta go together")
    if args.alpha is not None and args.alpha < 0:
        parser.error(f"--alpha: must be >= 0, got {args.alpha}")
    if args.dask_scheduler_file is not None and not args.dask_scheduler_file.is_file():
        parser.error(f"--dask-scheduler-file: no file at {args.dask_scheduler_file}")
    if "standard-dask" in args.strategies:
        try:
            strategy_class("standard-dask")
        except ValueError as exc:
            parser.error(f"--strategies: {exc}")
    if args.calibration is not None and not args.calibration.is_file():
        parser.error(
            f"--calibration: no file at {args.calibration}; run python -m bench.calibrate --out {args.calibration}"
        )
    if not args.dry_run:
        try:
            check_writable(args.out)
        except ValueError as exc:
            parser.error(f"--out: {exc}")
    return args, datasets


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


def run_info(n_gpus: int) -> dict:
    """Fields shared by every row of this invocation (run id, git sha, device name, cores)."""
    system = describe_system()
    return {
        "run_id": new_run_id(),
        "git_sha": system.get("git_sha"),
        "cores": len(os.sched_getaffinity(0)),
        "device_name": (system.get("gpus") or [{}])[0].get("name")
        if n_gpus
        else f"cpu: {system.get('cpu_model', 'unknown')}",
    }


def main(argv: list[str] | None = None) -> int:
    args, datasets = parse_args(argv)
    env = detect_env()
    if env.world_size > 1:
        return main_cluster(args, datasets, env)
    baseline = measure_rank_baseline()
    avail = psutil.virtual_memory().available
    n_gpus = gpus_here()
    rpn = args.ranks_per_node or (n_gpus or 4)
    max_local = args.max_local_ranks or max(1, min(64, int(0.5 * avail // baseline)))
    points = plan_points(
        datasets,
        args.strategies,
        args.models,
        args.gpus,
        repeats=args.repeats,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        max_steps=args.max_steps,
        ranks_per_node=rpn,
        max_local_ranks=max_local,
        gpus_here=n_gpus,
        backend=args.backend,
        dask_contiguous=args.dask_contiguous,
        host_copy=args.host_copy,
        max_eval_steps=args.max_eval_steps,
    )
    by_label = {d.text: d for d in datasets}
    budget = int(avail * MEMORY_MARGIN)
    if args.dry_run:  # nothing built or probed: the runtime stands in for runtime + model
        parent = parent_pss()
        predicted = {
            p.key: predict_node_peak(p, by_label[p.dataset], runtime=baseline, parent=parent)
            for p in points
        }
        print_plan(points, predicted, budget, baseline)
        return 0
    done = set() if args.force else finished_keys(args.out, statuses=DONE_STATUSES)
    todo = [p for p in points if p.key not in done]
    run = run_info(n_gpus)
    if todo:  # one system description per invocation that runs something
        write_system_json(
            args.out.with_name(f"{args.out.stem}.{run['run_id']}.system.json"),
            extra={"rank_baseline_pss": baseline, "points": len(todo)},
        )
    comm = comm_model(args, args.quiet) if any(p.mode == "emulated" for p in todo) else None
    if not args.quiet:
        print(
            f"{len(points)} points, {len(points) - len(todo)} already in {args.out}, {len(todo)} to run "
            f"(idle rank {baseline / 2**20:.0f} MiB, {max_local} local ranks at most)",
            file=sys.stderr,
        )
    bar = tqdm(todo, unit="point", disable=args.quiet, dynamic_ncols=True)
    try:
        for point in bar:
            bar.set_description(point.label)
            row = run_one(point, by_label[point.dataset], run, baseline, budget, args, comm)
            append_row(args.out, row)
            if not args.quiet:
                tqdm.write(point_line(point, row))
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted: finished points are kept in {args.out}; re-run to resume",
            file=sys.stderr,
        )
        return 130
    bar.close()
    if not args.quiet:
        print(f"wrote {len(todo)} rows to {args.out}", file=sys.stderr)
    return 0


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
        repeats=args.repeats,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        max_steps=args.max_steps,
        ranks_per_node=env.local_world_size,
        max_local_ranks=env.world_size,
        gpus_here=0,
        backend=args.backend,
        dask_contiguous=args.dask_contiguous,
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
    run = run_info(n_gpus)
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
        return failed_row(point, ds, run, res.status, res.error, guard.predicted, guard.probe)
    return ok_row(
        point,
        ds,
        run,
        res.reports,
        predicted=guard.predicted,
        comm=comm,
        probe=guard.probe,
        node_peak=res.node_peak,
    )


def point_line(point: SweepPoint, row: dict) -> str:
    """One human line per finished point."""
    if row["status"] != "ok":
        return f"{point.label}: {row['status']} - {row['error']}"
    pss = row.get("host_peak_pss_max_rank") or 0
    return (
        f"{point.label} [{point.mode}]: epoch {row['epoch_s_mean']:.2f} s, "
        f"{row['samples_per_s']:.0f} samples/s, peak PSS/rank {pss / 2**20:.0f} MiB, "
        f"best val MAE {row['best_val_mae']:.3f}"
    )


def print_plan(points: list[SweepPoint], predicted: dict, budget: int, baseline: int) -> None:
    print(
        f"{'dataset':<28} {'strategy':<12} {'model':<12} {'P':>4} {'mode':<9} {'ranks':>5} {'pred. node peak':>16}  note"
    )
    for p in points:
        pred = predicted[p.key]
        note = "skip: over available memory" if pred > budget else ""
        print(
            f"{p.dataset:<28} {p.strategy:<12} {p.model:<12} {p.world_size:>4} {p.mode:<9} "
            f"{p.local_ranks:>5} {pred / 2**30:>12.2f} GiB  {note}"
        )
    print(
        f"available for ranks: {budget / 2**30:.1f} GiB; idle rank measured at {baseline / 2**20:.0f} MiB"
    )
    print("predictions: runtime + data only; a real run adds the model probe's training memory")


if __name__ == "__main__":
    sys.exit(main())
