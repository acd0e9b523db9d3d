"""The sweep plan: which points run, in which mode, and how much memory each is predicted to need.

A point is one (dataset, strategy, model, world size, repeat). Its mode is decided here:
``measured`` when its ranks fit on this host (GPUs, or CPU ranks up to ``max_local_ranks``, which
the driver caps at what the usable cores hold unless asked to oversubscribe), ``emulated``
otherwise (k real ranks play ranks 0..k-1 of the larger world). A sweep with emulated points also
emulates its largest measured world (:func:`with_validation`), so every projection sits beside a
measurement of the same kind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from pgti_core.batching import WindowSpec, split_starts
from pgti_core.data.datasets import DatasetSpec
from pgti_core.models.registry import DIFFUSION_MODELS, model_label
from pgti_core.train.run import RunConfig

FLOAT_BYTES = 4


@dataclass(frozen=True)
class SweepPoint:
    """One sweep point and repeat, with how it will be run here."""

    dataset: str
    strategy: str
    model: str
    world_size: int
    repeat: int
    epochs: int
    batch_size: int
    seed: int
    lags: int
    horizon: int
    max_steps: int | None
    ranks_per_node: int
    mode: str
    local_ranks: int
    backend: str
    device: str
    dask_contiguous: bool = False
    diffusion: str = "paper"
    host_copy: str = "private"
    max_eval_steps: int | None = None
    validation: bool = False  # an emulation of a world also measured, to check the projection

    @property
    def key(self) -> str:
        """Stable identity for resume: the configuration, repeat and mode (not how many ran);
        the default diffusion is left out so rows written before it existed still match."""
        ident = {k: v for k, v in asdict(self).items() if k not in ("local_ranks",)}
        for name, default in (
            ("host_copy", "private"),
            ("max_eval_steps", None),
            ("diffusion", "paper"),
        ):
            if ident[name] == default:  # defaults: keys of rows written before them stay
                del ident[name]
        if not self.validation:  # keys of rows written before the field existed stay valid
            ident.pop("validation")
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        model = model_label(self.model, self.diffusion)
        tag = " (validation)" if self.validation else ""
        return f"{self.dataset} {self.strategy} {model} P={self.world_size}{tag} r{self.repeat}"

    @property
    def config_key(self) -> tuple:
        """What repeats and modes of one configuration share (for repeats and validation)."""
        return (
            self.dataset,
            self.strategy,
            self.model,
            self.diffusion,
            self.host_copy,
            self.world_size,
            self.epochs,
            self.batch_size,
            self.max_steps,
            self.max_eval_steps,
            self.dask_contiguous,
        )

    def run_config(self) -> RunConfig:
        return RunConfig(
            dataset=self.dataset,
            strategy=self.strategy,
            model=self.model,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed + self.repeat,
            lags=self.lags,
            horizon=self.horizon,
            max_steps=self.max_steps,
            dask_contiguous=self.dask_contiguous,
            diffusion=self.diffusion,
            host_copy=self.host_copy,
            max_eval_steps=self.max_eval_steps,
        )


def plan_points(
    datasets: list[DatasetSpec],
    strategies: list[str],
    models: list[str],
    world_sizes: list[int],
    *,
    repeats: int,
    epochs: int,
    batch_size: int | None,
    seed: int,
    max_steps: int | None,
    ranks_per_node: int,
    max_local_ranks: int,
    gpus_here: int,
    backend: str | None = None,
    dask_contiguous: bool = False,
    host_copy: str = "auto",
    max_eval_steps: int | None = None,
    diffusion: str = "paper",
) -> list[SweepPoint]:
    """The full grid, datasets outermost and repeats innermost, each with its mode decided.

    ``host_copy`` (``auto``, ``private``, ``shared``) applies to ``index``: ``auto`` shares one
    normalized copy between the local ranks of a node when there are several, else keeps it
    private (P = 1 gains nothing from a file); the other strategies are always ``private``.
    ``diffusion`` applies to the models that diffuse (:data:`DIFFUSION_MODELS`).
    """
    points = []
    for ds in datasets:
        for model in models:
            for strategy in strategies:
                for world in world_sizes:
                    if gpus_here:
                        local_cap, dev = gpus_here, "cuda"
                    else:
                        local_cap, dev = max_local_ranks, "cpu"
                    measured = world <= local_cap
                    mode = "measured" if measured else "emulated"
                    local = world if measured else min(world, ranks_per_node, local_cap)
                    be = backend or ("nccl" if dev == "cuda" else "gloo")
                    for rep in range(repeats):
                        points.append(
                            SweepPoint(
                                dataset=ds.text,
                                strategy=strategy,
                                model=model,
                                world_size=world,
                                repeat=rep,
                                epochs=epochs,
                                batch_size=batch_size or ds.batch_size,
                                seed=seed,
                                lags=ds.window.lags,
                                horizon=ds.window.horizon,
                                max_steps=max_steps,
                                ranks_per_node=world if measured else ranks_per_node,
                                mode=mode,
                                local_ranks=local,
                                backend=be,
                                device=dev,
                                dask_contiguous=dask_contiguous and strategy == "standard-dask",
                                diffusion=diffusion if model in DIFFUSION_MODELS else "paper",
                                host_copy=resolve_host_copy(host_copy, strategy, local),
                                max_eval_steps=max_eval_steps,
                            )
                        )
    return points


def cpu_rank_cap(memory_cap: int, cores: int, threads_per_rank: int, oversubscribe: bool) -> int:
    """Most CPU ranks a point runs for real here: what memory allows and, unless
    ``oversubscribe``, what the usable cores hold at ``threads_per_rank`` each (at least one).

    Ranks beyond the cores share them, so their times measure contention, not scaling.
    """
    if oversubscribe:
        return memory_cap
    return max(1, min(memory_cap, cores // threads_per_rank))


def with_validation(points: list[SweepPoint], local_cap: int) -> list[SweepPoint]:
    """``points`` plus, for each configuration with emulated worlds, an emulation of the largest
    world that runs measured here (measured too if the sweep did not ask for it).

    The pair checks the projection on this host: same data placement, real ranks without a
    process group, the all-reduce modelled. Nothing is added when no world above one fits.
    """
    world = min(local_cap, max((p.world_size for p in points), default=1))
    if world < 2:
        return points
    out: list[SweepPoint] = []
    groups: dict[tuple, list[SweepPoint]] = {}
    for p in points:
        groups.setdefault((p.dataset, p.strategy, p.model), []).append(p)
    for group in groups.values():
        out += group
        emulated = [p for p in group if p.mode == "emulated"]
        if not emulated:
            continue
        base = emulated[0]
        have = {(p.world_size, p.repeat) for p in group if p.mode == "measured"}
        reps = sorted({p.repeat for p in group})
        measured = [
            replace(
                base,
                world_size=world,
                repeat=r,
                mode="measured",
                local_ranks=world,
                ranks_per_node=world,
            )
            for r in reps
            if (world, r) not in have
        ]
        k = min(world, base.ranks_per_node, base.local_ranks)
        checks = measured + [
            replace(base, world_size=world, repeat=r, local_ranks=k, validation=True) for r in reps
        ]
        # right after the group's runs up to that world: the pair sees the same host load
        start = len(out) - len(group)
        at = max(
            (i for i in range(start, len(out)) if out[i].world_size <= world), default=start - 1
        )
        out[at + 1 : at + 1] = checks
    return out


def analytic_bytes(point: SweepPoint, ds: DatasetSpec, rank: int = 0) -> dict[str, int]:
    """What ``point``'s strategy keeps resident on ``rank`` (train + val + test), from shapes alone.

    Mirrors the strategies' buffers: ``standard`` stacks every window, ``index``/``gpu-index``
    hold each split's span once, ``partitioned`` its block of each split plus the halo.
    """
    spec = WindowSpec(point.lags, point.horizon)
    step = ds.nodes * ds.features * FLOAT_BYTES
    splits = split_starts(ds.steps, spec)
    total = 0
    for starts in splits.values():
        n = len(starts)
        if point.strategy == "standard":
            total += n * spec.length * step
        elif point.strategy == "standard-dask":
            continue  # the windows live in the Dask cluster, see cluster_bytes
        elif point.strategy == "partitioned":
            block = n // point.world_size + (1 if rank < n % point.world_size else 0)
            total += (block + spec.length - 1) * step if block else 0
        elif point.strategy in ("index", "gpu-index"):
            total += (n + spec.length - 1) * step
    on_device = point.strategy == "gpu-index" and point.device == "cuda"
    return {"host": 0 if on_device else total, "device": total if on_device else 0}


def cluster_bytes(point: SweepPoint, ds: DatasetSpec) -> int:
    """``standard-dask``: the windows of every split persisted once in the cluster's memory."""
    if point.strategy != "standard-dask":
        return 0
    spec = WindowSpec(point.lags, point.horizon)
    step = ds.nodes * ds.features * FLOAT_BYTES
    return sum(len(s) * spec.length * step for s in split_starts(ds.steps, spec).values())


def resolve_host_copy(host_copy: str, strategy: str, local_ranks: int) -> str:
    """``private`` or ``shared`` for one point (see :func:`plan_points`)."""
    if strategy != "index":
        return "private"
    if host_copy == "auto":
        return "shared" if local_ranks > 1 else "private"
    return host_copy


def transient_bytes(point: SweepPoint, ds: DatasetSpec) -> int:
    """Extra bytes held briefly while building: standard's normalized copy of the train span."""
    if point.strategy != "standard":
        return 0
    spec = WindowSpec(point.lags, point.horizon)
    n_train = len(split_starts(ds.steps, spec)["train"])
    return (n_train + spec.length - 1) * ds.nodes * ds.features * FLOAT_BYTES


def predict_node_peak(
    point: SweepPoint,
    ds: DatasetSpec,
    *,
    runtime: int,
    model_peak: int | None = None,
    parent: int = 0,
) -> int:
    """Predicted peak host footprint (bytes, every page once) of this host's share of ``point``.

    Per rank the peak is the larger of the build (``runtime`` + the strategy's data + its build
    transients) and training (``model_peak``, the probe's runtime + model + batch, + the data);
    without a probe, training is taken as the build. A shared host copy counts once per node.
    The node adds ``parent`` (the process sampling it) and a Dask cluster's windows.

    Args:
        runtime: an idle rank's private bytes, USS (probe or
            :func:`~bench.sweep.baseline.measure_rank_baseline`).
        model_peak: the rank's private bytes at the peak of a training step (``runtime`` + the
            probe's growth).
        parent: RSS of the parent that launches and samples the ranks; its shared pages are the
            runtime's libraries, which the ranks map too and the node holds once.
    """
    total = parent + cluster_bytes(point, ds)
    for r in range(point.local_ranks):
        data = analytic_bytes(point, ds, r)["host"]
        if point.host_copy == "shared" and r > 0:
            data = 0  # one copy per node, mapped by every local rank
        build = runtime + data + transient_bytes(point, ds)
        train = (model_peak if model_peak is not None else runtime) + data
        total += max(build, train)
    return int(total)
