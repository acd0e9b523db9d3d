"""The out-of-memory guard of a sweep point: probe the model, predict the node's peak, decide.

Before a point runs, the parent makes sure its dataset is in the cache (outside any measurement),
probes the model at the point's shape (:mod:`bench.perf.probe`, cached per machine) and predicts
the node's peak with :func:`~bench.sweep.plan.predict_node_peak`. A point whose data alone
already exceeds the budget is skipped without probing.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from bench.perf.probe import ProbeError, ProbeResult, ProbeSpec, model_probe
from bench.sweep.plan import SweepPoint, predict_node_peak
from pgti_core.data.datasets import DatasetSpec, load_dataset


@dataclass
class Guard:
    """The guard's verdict: ``status`` is ``run``, ``skipped``, ``oom`` or ``failed`` (the probe).

    Args:
        status: what to do with the point.
        predicted: predicted node peak in bytes (``None`` when the probe failed).
        probe: the model probe, when it ran.
        error: why the point is not run, one line.
    """

    status: str
    predicted: int | None
    probe: ProbeResult | None = None
    error: str = ""


def parent_resident() -> int:
    """RSS of this process: it samples the node, so it counts in the node's footprint, and its
    shared pages (the runtime's libraries) stand for the ones every rank maps as well."""
    return int(psutil.Process().memory_info().rss)


def probe_spec(point: SweepPoint, ds: DatasetSpec, edges: int, threads: int = 1) -> ProbeSpec:
    """The probe of one rank of ``point``: its model, graph width, window and batch."""
    return ProbeSpec(
        model=point.model,
        nodes=ds.nodes,
        edges=edges,
        features=ds.features,
        lags=point.lags,
        horizon=point.horizon,
        batch=point.batch_size,
        ddp=point.mode == "measured" and point.world_size > 1,
        device=point.device,
        threads=threads,
    )


def point_edges(point: SweepPoint, ds: DatasetSpec) -> int:
    """Edge count of the point's graph (builds the dataset's cache entry if it is missing)."""
    return load_dataset(ds, seed=point.seed + point.repeat).num_edges


def guard_point(
    point: SweepPoint, ds: DatasetSpec, budget: int, runtime: int, threads: int = 1
) -> Guard:
    """Probe and predict ``point``; ``runtime`` (an idle rank's private bytes) bounds it before
    the probe. The probe's private runtime and its training growth give the rank's share."""
    parent = parent_resident()
    floor = predict_node_peak(point, ds, runtime=runtime, parent=parent)
    if floor > budget:
        return Guard("skipped", floor, error=_over(floor, budget))
    try:
        probe = model_probe(probe_spec(point, ds, point_edges(point, ds), threads))
    except ProbeError as exc:
        return Guard(exc.status, None, error=str(exc))
    private = probe.host_runtime if probe.host_runtime_uss is None else probe.host_runtime_uss
    growth = probe.host_model_peak - probe.host_runtime
    predicted = predict_node_peak(
        point, ds, runtime=private, model_peak=private + growth, parent=parent
    )
    if predicted > budget:
        return Guard("skipped", predicted, probe, _over(predicted, budget))
    return Guard("run", predicted, probe)


def _over(predicted: int, budget: int) -> str:
    return f"predicted peak {predicted / 2**30:.1f} GiB exceeds available {budget / 2**30:.1f} GiB"
