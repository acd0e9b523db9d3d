"""``python -m pgti_core.train``: train one configuration, alone or under torchrun/srun/mpiexec.

Rank 0 prints one line per epoch and writes the metrics JSON (``--metrics-out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pgti_core.batching.host_copy import HOST_COPIES
from pgti_core.batching.registry import STRATEGIES
from pgti_core.cli import (
    ArgumentParser,
    bounded,
    check_output_file,
    one_line_data_errors,
    positive_float,
    seed,
)
from pgti_core.data.datasets import parse_dataset_spec
from pgti_core.data.errors import DataError, first_line
from pgti_core.dist.env import detect_env, device_for, resolve_backend
from pgti_core.dist.group import distributed
from pgti_core.models.diffusion import DIFFUSIONS
from pgti_core.models.registry import MODELS
from pgti_core.progress import set_quiet
from pgti_core.train.loop import EpochRecord
from pgti_core.train.run import RunConfig, World, run

_STEPS = bounded(int, 1, 100_000)  # lags, horizon: window lengths in time steps


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m pgti_core.train", description=__doc__)
    p.add_argument(
        "--dataset", default="metr-la", help="profile, 'name:nodes=..,steps=..', or real-file spec"
    )
    p.add_argument("--strategy", default="index", choices=list(STRATEGIES), help="batching")
    p.add_argument("--model", default="dcrnn-paper", choices=list(MODELS), help="model")
    p.add_argument(
        "--diffusion",
        default="paper",
        choices=list(DIFFUSIONS),
        help="diffusion operator of dcrnn-paper/dcrnn: the paper's, or PGT 0.56's (README)",
    )
    p.add_argument("--epochs", type=bounded(int, 1, 100_000), default=1, help="training epochs")
    p.add_argument(
        "--batch-size",
        type=bounded(int, 1, 1 << 20),
        default=None,
        help="per rank (default: the profile's)",
    )
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=seed, default=0, help="seed of data, model and shuffles")
    p.add_argument("--lags", type=_STEPS, default=None, help="input steps (default: the profile's)")
    p.add_argument(
        "--horizon", type=_STEPS, default=None, help="target steps (default: the profile's)"
    )
    p.add_argument(
        "--max-steps",
        type=bounded(int, 1, 10**9),
        default=None,
        help="cap on steps per epoch (default: the whole epoch)",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=("gloo", "nccl"),
        help="collective backend (default: nccl with CUDA, else gloo)",
    )
    p.add_argument("--pin-memory", action="store_true", help="pinned host buffers (index on CUDA)")
    p.add_argument(
        "--host-copy",
        choices=HOST_COPIES,
        default="private",
        help="index: one copy per rank, or one normalized file per node shared by local ranks",
    )
    p.add_argument(
        "--prefetch",
        action="store_true",
        help="index: gather and copy the next batch while the current one trains",
    )
    p.add_argument(
        "--reuse-buffer",
        action="store_true",
        help="gpu-index: gather every batch into one preallocated device buffer",
    )
    p.add_argument(
        "--metrics-out",
        type=Path,
        default=None,
        help="rank 0 writes the run's metrics JSON here (default: none)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


@one_line_data_errors("python -m pgti_core.train")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        set_quiet()  # no dataset-build bars either
    config = RunConfig(
        dataset=args.dataset,
        strategy=args.strategy,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        lags=args.lags,
        horizon=args.horizon,
        max_steps=args.max_steps,
        pin_memory=args.pin_memory,
        diffusion=args.diffusion,
        host_copy=args.host_copy,
        prefetch=args.prefetch,
        reuse_buffer=args.reuse_buffer,
    )
    try:
        config.validate()
        spec = parse_dataset_spec(config.dataset)
        if spec.is_file:
            spec.open()  # files located and their headers checked now, before any work
        backend = resolve_backend(args.backend)
        env = detect_env()
        device = device_for(env, backend)
        if args.metrics_out is not None and env.rank == 0:
            check_output_file(args.metrics_out)
    except ValueError as exc:
        parser.error(first_line(exc))

    def progress(rec: EpochRecord) -> None:
        if env.rank == 0 and not args.quiet:
            print(
                f"epoch {rec.epoch + 1}/{config.epochs}: train MAE {rec.train_loss:.4f}, "
                f"val MAE {rec.val['mae']:.4f}, {rec.wall_s:.2f} s",
                flush=True,
            )

    try:
        with distributed(env, backend):
            world = World(env.rank, env.world_size, device, ddp=env.world_size > 1)
            outcome = run(config, world, on_epoch=progress)
    except DataError:
        raise  # one line, exit 1 (one_line_data_errors)
    except ValueError as exc:
        print(f"python -m pgti_core.train: error: {first_line(exc)}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"rank {env.rank}/{env.world_size} finished", file=sys.stderr, flush=True)
    if env.rank == 0:
        summary = dict(outcome.summary(), world_size=env.world_size, launcher=env.launcher)
        if args.metrics_out is not None:
            args.metrics_out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.metrics_out.with_name(f".{args.metrics_out.name}.tmp")
            tmp.write_text(json.dumps(summary, indent=2, default=str))
            os.replace(tmp, args.metrics_out)
        if not args.quiet:
            print(
                f"best val MAE {outcome.result.best_val['mae']:.4f}, test MAE "
                f"{outcome.result.test.get('mae', float('nan')):.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
