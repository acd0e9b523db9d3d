"""One training run end to end: dataset -> splits -> normalizer -> strategies -> model -> fit.

Both the ``python -m pgti_core.train`` command and the harness's worker call :func:`run`, so what
is benchmarked is exactly what users train with.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from pgti_core.batching import WindowSpec, build_strategy, split_starts
from pgti_core.batching.host_copy import check_host_copy
from pgti_core.batching.registry import strategy_class
from pgti_core.data.datasets import DatasetSpec, load_dataset, parse_dataset_spec
from pgti_core.data.normalize import Normalizer, cached_train_window_stats
from pgti_core.dist.group import all_reduce_sum, broadcast_object, is_main
from pgti_core.models.registry import build_model, check_model
from pgti_core.train.loop import EpochRecord, PhaseHook, TrainResult, fit


@dataclass
class RunConfig:
    """One configuration to train.

    Args:
        dataset: profile or file spec (``metr-la``, ``metr-la:nodes=50,steps=2000``, ...).
        strategy: ``standard``, ``index``, ``gpu-index`` or ``partitioned``.
        model: ``dcrnn-paper``, ``dcrnn``, ``tgcn`` or ``a3tgcn``.
        epochs: training epochs (default 1).
        batch_size: samples per batch per rank (default: the profile's, 64 for traffic).
        lr: Adam learning rate (default 1e-3).
        seed: seeds the model init, shuffles and synthetic data (default 0).
        lags, horizon: window geometry (default: the profile's).
        max_steps: cap on training steps per epoch (default: whole epoch).
        max_eval_steps: cap on validation and test batches (default: the whole split).
        pin_memory: pinned host buffers for ``index`` on CUDA (default False).
        prefetch: ``index``: the next batch's gather and host-to-device copy overlap the current
            step (default False).
        reuse_buffer: ``gpu-index``: batches gathered into one reused device buffer (default
            False).
        dask_scheduler: ``standard-dask``: scheduler address or scheduler file to join (default:
            the strategy starts its own local cluster).
        dask_contiguous: ``standard-dask``: contiguous blocks per rank, only the batch order
            shuffled (the artifact's batch-level shuffle; default False).
        diffusion: ``paper`` (default) or ``pgt`` (PGT 0.56's operator) for the diffusion models.
        host_copy: ``index``: ``private`` (default, one copy per rank) or ``shared`` (one
            normalized file per node mapped by every local rank).
    """

    dataset: str = "metr-la"
    strategy: str = "index"
    model: str = "dcrnn-paper"
    epochs: int = 1
    batch_size: int | None = None
    lr: float = 1e-3
    seed: int = 0
    lags: int | None = None
    horizon: int | None = None
    max_steps: int | None = None
    max_eval_steps: int | None = None
    pin_memory: bool = False
    prefetch: bool = False
    reuse_buffer: bool = False
    dask_scheduler: str | None = None
    dask_contiguous: bool = False
    diffusion: str = "paper"
    host_copy: str = "private"

    def validate(self) -> DatasetSpec:
        """Check every field; return the parsed dataset spec. Raises ``ValueError`` naming the field."""
        strategy_class(self.strategy)
        check_model(self.model, self.diffusion)
        if self.epochs < 1:
            raise ValueError(f"epochs: must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: must be >= 1, got {self.max_steps}")
        for name in ("lags", "horizon"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed: must be in 0..2**32-1, got {self.seed}")
        if self.max_eval_steps is not None and self.max_eval_steps < 1:
            raise ValueError(f"max_eval_steps: must be >= 1, got {self.max_eval_steps}")
        check_host_copy(self.host_copy)
        if self.host_copy == "shared" and self.strategy != "index":
            raise ValueError(f"host_copy: 'shared' applies to index, not {self.strategy}")
        return parse_dataset_spec(self.dataset)


@dataclass
class World:
    """Who this process is: its rank among the ranks whose data placement it reproduces.

    ``data_rank``/``data_world`` give the data placement (sampler shard, partition). They equal
    the process group's rank/size when measured; in emulation a process plays rank ``data_rank``
    of a larger world with no process group (``reduce`` is ``None``).
    """

    data_rank: int = 0
    data_world: int = 1
    device: torch.device = torch.device("cpu")
    ddp: bool = False

    @property
    def reduce(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if not self.ddp:
            return None

        def _sum(t: torch.Tensor) -> torch.Tensor:
            return all_reduce_sum(t.to(self.device)).cpu()

        return _sum


@dataclass
class RunOutcome:
    """Everything one rank measured in a run (the harness turns it into a results row)."""

    config: RunConfig
    spec: WindowSpec
    prep_s: float
    result: TrainResult
    strategy: dict
    dataset: dict
    normalizer: Normalizer
    batch_size: int
    model_params: int

    def summary(self) -> dict:
        """A JSON-ready digest: config, metrics per epoch, best validation and test metrics."""
        return {
            "config": asdict(self.config),
            "lags": self.spec.lags,
            "horizon": self.spec.horizon,
            "batch_size": self.batch_size,
            "model_params": self.model_params,
            "prep_s": self.prep_s,
            "train_s": self.result.train_s,
            "dataset": self.dataset,
            "strategy": self.strategy,
            "normalizer": self.normalizer.as_dict(),
            "epochs": [
                {"epoch": r.epoch, "train_mae": r.train_loss, "wall_s": r.wall_s, "val": r.val}
                for r in self.result.epochs
            ],
            "best_val": self.result.best_val,
            "test": self.result.test,
        }


def run(
    config: RunConfig,
    world: World | None = None,
    *,
    phase: PhaseHook | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> RunOutcome:
    """Train ``config`` as rank ``world.data_rank`` of ``world.data_world``; returns measurements."""
    world = world or World()
    phase = phase or (lambda _name: nullcontext())
    dspec = config.validate()
    t0 = time.perf_counter()
    with ExitStack() as cleanup:  # closes strategies, then their Dask cluster, whatever happens
        with phase("prep"):
            series = load_dataset(dspec, seed=config.seed)
            spec = WindowSpec(
                dspec.window.lags if config.lags is None else config.lags,
                dspec.window.horizon if config.horizon is None else config.horizon,
            )
            if spec.horizon > spec.lags and config.model == "dcrnn-paper":
                raise ValueError(
                    "horizon: dcrnn-paper predicts one target step per input step; "
                    "needs horizon <= lags"
                )
            splits = split_starts(series.num_steps, spec)
            normalizer = _shared_stats(series, spec, splits["train"], world)
            batch = config.batch_size or dspec.batch_size
            extra, release = _strategy_extras(config)
            cleanup.callback(release)
            strategies = {}
            for split in ("train", "val", "test"):
                strategies[split] = build_strategy(
                    config.strategy,
                    series,
                    spec,
                    splits[split],
                    normalizer,
                    batch_size=batch,
                    rank=world.data_rank,
                    world_size=world.data_world,
                    seed=config.seed,
                    device=world.device,
                    shuffle=split == "train",
                    **extra,
                )
                cleanup.callback(strategies[split].close)
            torch.manual_seed(config.seed)
            model = build_model(
                config.model,
                num_nodes=series.num_nodes,
                num_features=series.num_features,
                edge_index=series.edge_index,
                edge_weight=series.edge_weight,
                lags=spec.lags,
                horizon=spec.horizon,
                diffusion=config.diffusion,
            ).to(world.device)
            if world.ddp:
                ids = [world.device.index] if world.device.type == "cuda" else None
                # The graph buffers are built identically on every rank and never change: no
                # broadcast at init or per forward. torch 2.13 deprecates broadcast_buffers in favour
                # of forward_sync_buffers, which still broadcasts at init, and itself advises
                # keeping broadcast_buffers=False for that case: silence its FutureWarning here.
                with warnings.catch_warnings():
                    warnings.filterwarnings(
                        "ignore", "`broadcast_buffers` is deprecated", FutureWarning
                    )
                    model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        prep_s = time.perf_counter() - t0
        train, evals = strategies["train"], {k: strategies[k] for k in ("val", "test")}
        result = fit(
            model,
            train,
            evals["val"],
            normalizer,
            epochs=config.epochs,
            lr=config.lr,
            test=evals["test"],
            reduce=world.reduce,
            max_steps=config.max_steps,
            max_eval_steps=config.max_eval_steps,
            phase=phase,
            on_epoch=on_epoch,
        )
        strategy = train.describe()
    resident = {
        k: train.resident_bytes()[k] + sum(e.resident_bytes()[k] for e in evals.values())
        for k in ("host", "device")
    }
    strategy = dict(
        strategy,
        resident_host_bytes=resident["host"],
        resident_device_bytes=resident["device"],
        steps_per_epoch=len(train.plan()),
    )
    dataset = {
        "name": dspec.label,
        "nodes": series.num_nodes,
        "steps": series.num_steps,
        "features": series.num_features,
        "edges": series.num_edges,
        "raw_bytes": series.nbytes,
    }
    params = sum(p.numel() for p in model.parameters())
    return RunOutcome(config, spec, prep_s, result, strategy, dataset, normalizer, batch, params)


def _strategy_extras(config: RunConfig) -> tuple[dict, Callable[[], None]]:
    """Strategy-specific keyword arguments, and what to close after the run.

    ``standard-dask`` joins the given scheduler, or starts one local cluster that its train, val
    and test strategies share.
    """
    if config.strategy == "index":
        extras = {"pin_memory": config.pin_memory, "host_copy": config.host_copy}
        return {**extras, "prefetch": config.prefetch}, lambda: None
    if config.strategy == "gpu-index":
        return {"reuse_buffer": config.reuse_buffer}, lambda: None
    if config.strategy != "standard-dask":
        return {}, lambda: None
    from pgti_core.batching.dask_cluster import connect, shutdown, start_local_cluster

    if config.dask_scheduler:
        client, cluster = connect(config.dask_scheduler), None
    else:
        cluster, client = start_local_cluster(n_workers=2)
    extra = {"client": client, "contiguous": config.dask_contiguous}
    return extra, lambda: shutdown(client, cluster)


def _shared_stats(series, spec: WindowSpec, train_starts, world: World) -> Normalizer:
    """Rank 0 reads (or computes once and caches) the training-window statistics and broadcasts
    them: one pass per dataset and split, not one per rank and run."""
    if not world.ddp:
        return cached_train_window_stats(series, spec, train_starts)
    stats = cached_train_window_stats(series, spec, train_starts) if is_main() else None
    return broadcast_object(stats)
