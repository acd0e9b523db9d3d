"""Turn one point's rank reports into one results row (DESIGN.md § Results row).

Aggregation: max over ranks for per-rank figures (the slowest rank sets the pace, the largest
rank runs out of memory first), and the sum of the peaks of one host's ranks (plus a Dask
cluster's workers) for the node peak, what runs a node out of memory.
Emulated points get their epoch time projected with the communication model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from statistics import mean, stdev

from bench.perf.probe import ProbeResult
from bench.perf.project import CommModel, project_epoch
from bench.sweep.plan import SweepPoint, analytic_bytes
from bench.sweep.results import utc_now
from pgti_core import __version__
from pgti_core.data.datasets import DatasetSpec
from pgti_core.models.registry import model_label


def _max(values: Iterable[float | None]) -> float | None:
    """Largest of the values that are present (``None`` when none is)."""
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _int(value: float | None) -> int | None:
    """Byte counts averaged over steps come as floats; the schema stores whole bytes."""
    return None if value is None else round(value)


def rank_peaks_sum(reports: list[dict]) -> int:
    """Largest sum over one host of its ranks' peak PSS, plus the Dask workers' memory if any."""
    per_host: dict[str, int] = defaultdict(int)
    for r in reports:
        per_host[r["hostname"]] += r["host_memory"]["peak"]["pss"] or 0
    cluster = _max(r["summary"]["strategy"].get("cluster_memory_bytes") for r in reports) or 0
    return max(per_host.values()) + int(cluster)


def identity(point: SweepPoint, run: dict, status: str, error: str = "") -> dict:
    """The identity and configuration columns, filled for every row whatever its status."""
    return {
        "run_id": run["run_id"],
        "timestamp_utc": utc_now(),
        "git_sha": run.get("git_sha") or "",
        "pgti_version": __version__,
        "point_key": point.key,
        "repeat": point.repeat,
        "mode": point.mode,
        "status": status,
        "error": error,
        "strategy": point.strategy,
        "model": model_label(point.model, point.diffusion),
        "dataset": point.dataset,
        "lags": point.lags,
        "horizon": point.horizon,
        "dtype": "float32",
        "world_size": point.world_size,
        "ranks_per_node": point.ranks_per_node,
        "backend": point.backend,
        "device": run.get("device_name") or point.device,
        "batch_per_rank": point.batch_size,
        "global_batch": point.batch_size * point.world_size,
        "epochs": point.epochs,
        "oversubscribed": point.local_ranks * run.get("threads_per_rank", 1) > run["cores"],
        "validation": point.validation,
        "host_copy": point.host_copy,
    }


def failed_row(
    point: SweepPoint,
    ds: DatasetSpec,
    run: dict,
    status: str,
    error: str,
    predicted: int | None,
    probe: ProbeResult | None = None,
) -> dict:
    """A row for a point that did not produce measurements (oom, failed, skipped)."""
    row = identity(point, run, status, error)
    row.update(_shape(ds), predicted_peak_node=predicted, **_analytic(point, ds), **_probe(probe))
    return row


def _probe(probe: ProbeResult | None) -> dict:
    """The model probe's columns: runtime, runtime + model (host), model (device)."""
    if probe is None:
        return {}
    return {
        "host_runtime_peak": probe.host_runtime,
        "host_model_peak": probe.host_model_peak,
        "device_model_peak": probe.device_model_peak,
    }


def _shape(ds: DatasetSpec) -> dict:
    return {"nodes": ds.nodes, "steps": ds.steps, "features": ds.features}


def _analytic(point: SweepPoint, ds: DatasetSpec) -> dict:
    a = analytic_bytes(point, ds)
    return {"analytic_host_bytes": a["host"], "analytic_device_bytes": a["device"]}


def ok_row(
    point: SweepPoint,
    ds: DatasetSpec,
    run: dict,
    reports: list[dict],
    *,
    predicted: int | None,
    comm: CommModel | None,
    probe: ProbeResult | None = None,
    node_peak: int | None = None,
) -> dict:
    """The row of a point whose ranks all reported.

    ``node_peak`` is the parent's sample of the whole node; without one (cluster mode) the node
    peak is the sum of the ranks' peaks. With a ``probe``, the per-rank peak is split into
    runtime, model and data (``host_data_peak`` = peak PSS - the probe's runtime + model).
    """
    row = identity(point, run, "ok")
    first = reports[0]["summary"]
    row.update(_shape(ds), **_analytic(point, ds), predicted_peak_node=predicted)
    row["edges"] = first["dataset"]["edges"]
    times = [r["times"] for r in reports]
    prep = _max(r["summary"]["prep_s"] for r in reports)
    train = _max(r["summary"]["train_s"] for r in reports)
    steps = _max(t["steps"] for t in times) // max(point.epochs, 1)
    row.update(
        prep_s=prep,
        step_ms_p50=_max(t["step_ms_p50"] for t in times),
        step_ms_p95=_max(t["step_ms_p95"] for t in times),
        data_wait_frac=mean(t["data_wait_frac"] or 0.0 for t in times),
        steps_per_rank=steps,
    )
    host = [r["host_memory"] for r in reports]
    dev = [r["device_memory"] for r in reports]
    row.update(
        host_peak_pss_max_rank=_max(h["peak"]["pss"] for h in host),
        host_peak_rss_max_rank=_max(h["peak"]["rss"] for h in host),
        host_peak_uss_max_rank=_max(h["peak"]["uss"] for h in host),
        host_baseline_pss=_max(h["baseline"]["pss"] for h in host),
        host_peak_node=node_peak if node_peak is not None else rank_peaks_sum(reports),
        host_rank_peaks_sum=rank_peaks_sum(reports),
        host_resident_model_bytes=_max(
            r["summary"]["strategy"]["resident_host_bytes"] for r in reports
        ),
        device_peak_allocated=_max(d["peak"]["allocated"] for d in dev),
        device_peak_reserved=_max(d["peak"]["reserved"] for d in dev),
        device_peak_nvml=_max(d["peak"]["nvml"] for d in dev),
    )
    row.update(_probe(probe))
    if probe is not None and row["host_peak_pss_max_rank"] is not None:
        row["host_data_peak"] = row["host_peak_pss_max_rank"] - probe.host_model_peak
    strategies = [r["summary"]["strategy"] for r in reports]
    row.update(
        data_bytes_per_step=_int(_max(st.get("data_bytes_per_step") for st in strategies)),
        cluster_memory_bytes=_int(_max(st.get("cluster_memory_bytes") for st in strategies)),
    )
    best = first["best_val"]
    row.update(
        best_val_mae=best.get("mae"),
        best_val_rmse=best.get("rmse"),
        best_val_mape=best.get("mape"),
        final_train_mae=first["epochs"][-1]["train_mae"],
        test_mae=first["test"].get("mae"),
    )
    notes = []
    if not dev[0]["available"]:
        notes.append(f"device memory: {dev[0]['reason']}")
    if row["oversubscribed"]:
        notes.append(
            f"oversubscribed: {point.local_ranks} ranks x {run.get('threads_per_rank', 1)} threads "
            f"on {run['cores']} cores, times do not measure scaling"
        )
    val_s = _max(mean(r["val_s"]) for r in reports) or 0.0
    if point.mode == "measured":
        epochs = [r["summary"]["epochs"] for r in reports]
        walls = [max(e[i]["wall_s"] for e in epochs) for i in range(point.epochs)]
        row.update(
            train_s=train,
            total_s=prep + train,
            epoch_s_mean=mean(walls),
            epoch_s_std=stdev(walls) if len(walls) > 1 else 0.0,
            samples_per_s=sum(t["samples"] for t in times) / max(sum(walls), 1e-12),
        )
    else:
        row.update(_projected(point, reports, steps, prep, val_s, comm))
        notes.append(
            f"emulated: {len(reports)} real ranks of {point.world_size}; epoch time projected with "
            f"all-reduce alpha={comm.alpha_s:.3g} s, beta={comm.beta_Bps:.3g} B/s ({comm.source}) "
            f"and a wait for the slowest real rank of {straggler_wait_s(reports) * 1e3:.1f} ms "
            "per step; quality columns cover the real ranks' shards only"
        )
    row["notes"] = "; ".join(notes)
    return row


def _projected(
    point: SweepPoint, reports: list[dict], steps: int, prep: float, val_s: float, comm: CommModel
) -> dict:
    """Epoch time at ``point.world_size`` from the real ranks' per-step parts plus modelled comm."""
    parts = {}
    for part, frac in (
        ("data", "data_wait_frac"),
        ("compute", "compute_frac"),
        ("optim", "optimizer_frac"),
    ):
        per_rank = []
        for r in reports:
            t = r["times"]
            step_total = t["samples"] / t["samples_per_s"] if t["samples_per_s"] else 0.0
            per_rank.append((t[frac] or 0.0) * step_total / max(t["steps"], 1))
        parts[part] = max(per_rank)
    gather = _projected_gather(point, reports)
    grad_bytes = reports[0]["summary"]["model_params"] * 4
    proj = project_epoch(
        steps_per_rank=steps,
        data_s=parts["data"] - gather["measured_s"],
        compute_s=parts["compute"],
        optim_s=parts["optim"],
        grad_bytes=grad_bytes,
        world_size=point.world_size,
        model=comm,
        gather_s_per_step=gather["projected_s"],
        wait_s_per_step=straggler_wait_s(reports),
    )
    epoch_s = proj["epoch_s"]
    batch_samples = reports[0]["times"]["samples"] / max(point.epochs, 1) * point.world_size
    return {
        "train_s": (epoch_s + val_s) * point.epochs,
        "total_s": prep + (epoch_s + val_s) * point.epochs,
        "epoch_s_mean": epoch_s,
        "epoch_s_std": 0.0,
        "samples_per_s": batch_samples / max(epoch_s, 1e-12),
        "model_alpha_s": comm.alpha_s,
        "model_beta_Bps": comm.beta_Bps,
        "model_gather_s": gather["projected_s"] if point.strategy == "standard-dask" else None,
    }


def straggler_wait_s(reports: list[dict]) -> float:
    """Seconds per step the real ranks would wait for the slowest of them at each step.

    DDP ranks meet at every step's all-reduce, so a synchronized epoch lasts the sum over steps
    of the slowest rank's step, not the slowest rank's sum: under contention the ranks' steps
    vary independently and the difference is real time. Estimated from the real ranks' per-step
    times, paired by step index (the waiting caused by ranks beyond the real ones is not modelled).
    """
    paces = [r.get("step_s") or [] for r in reports]
    n = min(len(p) for p in paces)
    if len(paces) < 2 or n == 0:
        return 0.0
    synced = sum(max(p[i] for p in paces) for i in range(n)) / n
    slowest = max(sum(p[:n]) / n for p in paces)
    return max(0.0, synced - slowest)


def _projected_gather(point: SweepPoint, reports: list[dict]) -> dict[str, float]:
    """``standard-dask``: per-step gather seconds measured with k ranks, projected to P ranks.

    The k real ranks gathered concurrently from the cluster, so k x bytes / seconds is the
    aggregate rate it sustained; P ranks share that rate, so beyond k the per-step gather grows
    as P / k (the paper's baseline slows down at scale for exactly this reason).
    """
    measured = _max(r["summary"]["strategy"].get("gather_seconds_per_step") for r in reports) or 0.0
    return {
        "measured_s": measured,
        "projected_s": measured * max(1.0, point.world_size / len(reports)),
    }
