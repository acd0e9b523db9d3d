"""Alpha-beta communication model that projects epoch time for world sizes beyond this host.

Emulated sweep points run k real ranks of a world of P and time their steps; the all-reduce among
all P ranks comes from this model, whose latency ``alpha`` and bandwidth ``beta`` are calibrated
here by :mod:`bench.calibrate` or given. The cost formulas are those of Thakur, Rabenseifner and
Gropp, "Optimization of Collective Communication Operations in MPICH", IJHPCA 19(1), 2005, with
the reduction's compute term dropped (gradients are small next to the link time).
"""

from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ALGORITHMS = ("auto", "ring", "tree")


@dataclass(frozen=True)
class CommModel:
    """Latency/bandwidth model of one message between two ranks.

    Args:
        alpha_s (float): latency per message, seconds (>= 0).
        beta_Bps (float): bandwidth, bytes per second (> 0).
        source (str): where the numbers came from (``"calibrated:<file>"``, ``"given"``).
        algorithm (str, default ``"auto"``): all-reduce algorithm the library runs: ``"ring"``
            (gloo), ``"tree"``, or ``"auto"``, the cheaper of the two per call (as NCCL tunes).
    """

    alpha_s: float
    beta_Bps: float
    source: str
    algorithm: str = "auto"

    def __post_init__(self) -> None:
        _real("alpha_s", self.alpha_s)
        _real("beta_Bps", self.beta_Bps, positive=True)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm: must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}"
            )


def ring_allreduce_s(model: CommModel, world_size: int, nbytes: int) -> float:
    """Ring all-reduce: a ring reduce-scatter then a ring all-gather (Thakur et al. 2005;
    Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations",
    JPDC 69(2), 2009).

    ``2 (P-1) alpha + 2 (P-1)/P * n / beta``: bandwidth-optimal, latency linear in P.
    """
    p = _world(world_size)
    return 2 * (p - 1) * model.alpha_s + 2 * (p - 1) / p * _bytes(nbytes) / model.beta_Bps


def tree_allreduce_s(model: CommModel, world_size: int, nbytes: int) -> float:
    """Binomial-tree reduce then binomial-tree broadcast (Thakur et al. 2005).

    ``2 ceil(log2 P) alpha + 2 ceil(log2 P) * n / beta``: latency logarithmic in P.
    """
    steps = math.ceil(math.log2(_world(world_size)))
    return 2 * steps * (model.alpha_s + _bytes(nbytes) / model.beta_Bps)


def allreduce_s(model: CommModel, world_size: int, nbytes: int) -> float:
    """Seconds for one all-reduce of ``nbytes`` among ``world_size`` ranks; 0 at one rank.

    Uses ``model.algorithm``: ring, tree, or (``"auto"``) the cheaper of the two.
    """
    ring = ring_allreduce_s(model, world_size, nbytes)
    tree = tree_allreduce_s(model, world_size, nbytes)
    return {"ring": ring, "tree": tree, "auto": min(ring, tree)}[model.algorithm]


def gather_s(latency_s: float, bandwidth_Bps: float, nbytes: int) -> float:
    """Seconds for one rank to fetch ``nbytes`` from remote memory: ``latency + n / bandwidth``.

    The per-step cost of the paper's Dask baseline, where each step pulls its batch of
    materialized windows from the cluster's distributed memory.
    """
    latency_s = _real("latency_s", latency_s)
    bandwidth_Bps = _real("bandwidth_Bps", bandwidth_Bps, positive=True)
    return latency_s + _bytes(nbytes) / bandwidth_Bps


def project_epoch(
    steps_per_rank: int,
    data_s: float,
    compute_s: float,
    optim_s: float,
    grad_bytes: int,
    world_size: int,
    model: CommModel,
    fixed_s: float = 0.0,
    gather_s_per_step: float = 0.0,
    wait_s_per_step: float = 0.0,
) -> dict[str, float | int | str]:
    """Projected epoch seconds of one rank of ``world_size`` and the breakdown by phase.

    Every step waits for its data, computes, all-reduces the gradients (not overlapped with the
    backward pass: conservative, and exact for gradients that fit one DDP bucket) and steps the
    optimizer. Totals are per epoch.

    Args:
        steps_per_rank (int): optimizer steps per epoch on one rank.
        data_s (float): measured seconds per step waiting for the batch.
        compute_s (float): measured seconds per step in forward and backward.
        optim_s (float): measured seconds per step in the optimizer.
        grad_bytes (int): bytes all-reduced per step (all gradients).
        world_size (int): ranks in the projected world.
        model (CommModel): the all-reduce's latency/bandwidth model.
        fixed_s (float, default 0): per-epoch time independent of steps (e.g. validation).
        gather_s_per_step (float, default 0): remote batch fetch per step (see :func:`gather_s`).
        wait_s_per_step (float, default 0): time a step waits at the all-reduce for the slowest
            rank (stragglers; see :func:`bench.sweep.rows.straggler_wait_s`).
    """
    steps_per_rank = _count("steps_per_rank", steps_per_rank, minimum=0)
    world_size = _count("world_size", world_size, minimum=1)
    grad_bytes = _count("grad_bytes", grad_bytes, minimum=0)
    per_step = {
        "data_s": _real("data_s", data_s),
        "compute_s": _real("compute_s", compute_s),
        "optim_s": _real("optim_s", optim_s),
        "gather_s": _real("gather_s_per_step", gather_s_per_step),
        "wait_s": _real("wait_s_per_step", wait_s_per_step),
        "allreduce_s": allreduce_s(model, world_size, grad_bytes),
    }
    out: dict[str, float | int | str] = {k: steps_per_rank * v for k, v in per_step.items()}
    out["comm_s"] = out["allreduce_s"] + out["gather_s"]
    out["fixed_s"] = _real("fixed_s", fixed_s)
    out["epoch_s"] = sum(
        out[k] for k in ("data_s", "compute_s", "optim_s", "wait_s", "comm_s", "fixed_s")
    )
    out.update(
        steps_per_rank=steps_per_rank,
        world_size=world_size,
        model_alpha_s=model.alpha_s,
        model_beta_Bps=model.beta_Bps,
        model_algorithm=model.algorithm,
        model_source=model.source,
    )
    return out


def load_calibration(path: str | os.PathLike) -> CommModel:
    """The :class:`CommModel` in a calibration JSON written by :mod:`bench.calibrate`."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"calibration: {path} not found; run `python -m bench.calibrate --out {path}`"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"calibration: {path} is not valid JSON ({exc})") from None
    return _model_from(record, source=f"calibrated:{path}", where=str(path))


def save_calibration(record: Mapping, path: str | os.PathLike) -> Path:
    """Write a calibration record as JSON (checked first, so it loads back); returns the path."""
    _model_from(record, source="check", where="record")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(record), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _model_from(record: object, *, source: str, where: str) -> CommModel:
    if not isinstance(record, Mapping):
        raise ValueError(
            f"calibration: {where} must hold a JSON object, got {type(record).__name__}"
        )
    missing = [k for k in ("alpha_s", "beta_Bps") if k not in record]
    if missing:
        raise ValueError(f"calibration: {where} lacks field(s) {', '.join(missing)}")
    for key in ("alpha_s", "beta_Bps"):
        if isinstance(record[key], bool) or not isinstance(record[key], (int, float)):
            raise ValueError(f"{key}: {where} holds {record[key]!r}, not a number")
    algorithm = record.get("algorithm", "auto")
    return CommModel(float(record["alpha_s"]), float(record["beta_Bps"]), source, algorithm)


def _world(world_size: int) -> int:
    return _count("world_size", world_size, minimum=1)


def _bytes(nbytes: int) -> int:
    return _count("nbytes", nbytes, minimum=0)


def _real(name: str, value: object, positive: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if (
        isinstance(value, bool)
        or not math.isfinite(number)
        or number < 0
        or (positive and number == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: must be a finite number {bound}, got {value!r}")
    return number


def _count(name: str, value: object, minimum: int) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        count = None
    if count is None or isinstance(value, bool) or count < minimum:
        raise ValueError(f"{name}: must be an int >= {minimum}, got {value!r}")
    return count
