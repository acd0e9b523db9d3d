"""The command line of ``python -m bench.run``: its options, their defaults and their validation."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import (
    ArgumentParser,
    bounded,
    int_list,
    names,
    nonneg_float,
    positive_float,
    scheduler_file,
    seed,
)
from bench.perf.project import load_calibration
from bench.sweep.results import check_writable
from pgti_core.batching.host_copy import HOST_COPIES
from pgti_core.batching.registry import ALL_STRATEGIES, strategy_class
from pgti_core.data.datasets import DatasetSpec, parse_dataset_spec
from pgti_core.data.errors import first_line
from pgti_core.models.diffusion import DIFFUSIONS
from pgti_core.models.registry import MODELS

SWEEP_DOC = """Sweep world sizes x datasets x strategies x models, one CSV row a point.

Each point runs in fresh processes (clean memory peaks), is recorded with its status whatever
happens (ok, oom, killed, failed, skipped), and a re-run of the same command resumes where it stopped.
"""

DEFAULTS = {
    "gpus": "1,2,4",
    "datasets": "metr-la",
    "strategies": "standard,index,partitioned",
    "models": "dcrnn-paper",
}
MAX_POINTS = 100_000  # a plan beyond this is a typo (e.g. --repeats 100000000), not a sweep
_SMALL = bounded(int, 1, 4096)  # ranks, workers, threads: beyond is a typo on any host


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m bench.run", description=SWEEP_DOC)
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
    p.add_argument(
        "--epochs", type=bounded(int, 1, 100_000), default=1, help="training epochs per point"
    )
    p.add_argument(
        "--batch-size",
        type=bounded(int, 1, 1 << 20),
        default=None,
        help="samples per rank per step (default: the dataset profile's)",
    )
    p.add_argument(
        "--max-steps",
        type=bounded(int, 1, 10**9),
        default=None,
        help="cap on training steps per epoch (default: whole epoch)",
    )
    p.add_argument(
        "--max-eval-steps",
        type=bounded(int, 1, 10**9),
        default=None,
        help="cap on validation and test batches (default: the whole split)",
    )
    p.add_argument(
        "--repeats",
        type=repeats_arg,
        default=1,
        help="repeats per point, or 'auto': repeat until the 95%% interval of the epoch time is "
        "within --ci-target of the mean (at least 3, at most --max-repeats)",
    )
    p.add_argument(
        "--max-repeats",
        type=bounded(int, 1, 10_000),
        default=10,
        help="--repeats auto: most repeats",
    )
    p.add_argument(
        "--ci-target",
        type=positive_float,
        default=0.05,
        help="--repeats auto: wanted 95%% half-width as a fraction of the mean",
    )
    p.add_argument(
        "--oversubscribe",
        action="store_true",
        help="measure local points whose ranks x threads exceed the usable cores (rows are "
        "flagged oversubscribed; without it such points are emulated)",
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of data, model and shuffles")
    p.add_argument(
        "--ranks-per-node",
        type=_SMALL,
        default=None,
        help="ranks per node of the emulated/cluster world (default: GPUs here, else 4)",
    )
    p.add_argument(
        "--max-local-ranks",
        type=_SMALL,
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
        "--interval",
        type=bounded(float, 0.001, 60),
        default=0.05,
        help="memory sampling interval in seconds",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="all-reduce calibration JSON from bench.calibrate (default: <out dir>/calibration.json, made if missing)",
    )
    p.add_argument(
        "--alpha",
        type=nonneg_float,
        default=None,
        help="all-reduce latency in s (with --beta, instead of a calibration; default: none)",
    )
    p.add_argument(
        "--beta",
        type=positive_float,
        default=None,
        help="all-reduce bandwidth in bytes/s (with --alpha; default: none)",
    )
    p.add_argument(
        "--dask-workers",
        type=_SMALL,
        default=2,
        help="standard-dask: workers of the LocalCluster started for each point",
    )
    p.add_argument(
        "--dask-scheduler-file",
        type=scheduler_file,
        default=None,
        help="standard-dask: join this cluster (dask scheduler --scheduler-file) instead of a "
        "LocalCluster per point (default: none)",
    )
    p.add_argument(
        "--dask-contiguous",
        action="store_true",
        help="standard-dask: contiguous blocks per rank, only batch order shuffled (artifact variant)",
    )
    p.add_argument(
        "--threads-per-rank",
        type=_SMALL,
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
    p.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="directory for the speedup, efficiency and memory plots and summary.md drawn from "
        "the CSV after the sweep (default: <out dir>/<out stem>-plots)",
    )
    p.add_argument("--no-plots", action="store_true", help="draw no plots after the sweep")
    p.add_argument("--force", action="store_true", help="re-run points already in the CSV")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan with predicted memory and modes; run nothing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-point lines")
    return p


def repeats_arg(text: str) -> int | str:
    """``--repeats``: an integer >= 1 or ``auto``."""
    return "auto" if text.strip().lower() == "auto" else bounded(int, 1, 10_000)(text)


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
        for ds in datasets:
            ds.shape  # noqa: B018 - a file spec opens its files (header only) now
    except ValueError as exc:
        parser.error(f"--datasets: {first_line(exc)}")
    if not datasets:
        parser.error("--datasets: give at least one dataset")
    if len({d.text for d in datasets}) != len(datasets):
        parser.error("--datasets: a dataset is given twice")
    if len(set(args.strategies)) != len(args.strategies) or len(set(args.models)) != len(
        args.models
    ):
        parser.error("--strategies/--models: a name is given twice")
    n_points = len(datasets) * len(args.strategies) * len(args.models) * len(args.gpus)
    repeats = args.max_repeats if args.repeats == "auto" else args.repeats
    if n_points * repeats > MAX_POINTS:
        parser.error(
            f"--repeats {args.repeats}: the plan would hold {n_points * repeats} points "
            f"(at most {MAX_POINTS}); sweep fewer values"
        )
    if (args.alpha is None) != (args.beta is None):
        parser.error("--alpha and --beta go together")
    if args.backend == "nccl" and not _cuda():
        parser.error("--backend nccl needs CUDA GPUs on this host; use --backend gloo")
    if "standard-dask" in args.strategies:
        try:
            strategy_class("standard-dask")
        except ValueError as exc:
            parser.error(f"--strategies: {exc}")
    if args.calibration is not None:
        if not args.calibration.is_file():
            parser.error(
                f"--calibration: no file at {args.calibration}; run python -m bench.calibrate --out {args.calibration}"
            )
        try:
            load_calibration(args.calibration)
        except ValueError as exc:
            parser.error(f"--calibration: {first_line(exc)}")
    if not args.dry_run:
        try:
            check_writable(args.out)
        except ValueError as exc:
            parser.error(f"--out: {exc}")
    if args.plots is None:
        args.plots = args.out.with_name(f"{args.out.stem}-plots")
    if args.plots.exists() and not args.plots.is_dir():
        parser.error(f"--plots: {args.plots} is not a directory")
    return args, datasets


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
