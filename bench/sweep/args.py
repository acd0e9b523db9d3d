"""The command line of ``python -m bench.run``: its options, their defaults and their validation."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import int_list, names, positive_float, positive_int
from bench.sweep.results import check_writable
from pgti_core.batching.host_copy import HOST_COPIES
from pgti_core.batching.registry import ALL_STRATEGIES, strategy_class
from pgti_core.data.datasets import DatasetSpec, parse_dataset_spec
from pgti_core.models.diffusion import DIFFUSIONS
from pgti_core.models.registry import MODELS

SWEEP_DOC = """Sweep world sizes x datasets x strategies x models, one CSV row a point.

Each point runs in fresh processes (clean memory peaks), is recorded with its status whatever
happens (ok, oom, failed, skipped), and a re-run of the same command resumes where it stopped.
"""

DEFAULTS = {
    "gpus": "1,2,4",
    "datasets": "metr-la",
    "strategies": "standard,index,partitioned",
    "models": "dcrnn-paper",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=SWEEP_DOC,
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
    p.add_argument(
        "--diffusion",
        default="paper",
        choices=list(DIFFUSIONS),
        help="diffusion operator of dcrnn-paper/dcrnn (pgt: PGT 0.56's; rows name it model+pgt)",
    )
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
