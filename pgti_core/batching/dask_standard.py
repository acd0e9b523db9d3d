"""The paper's standard-DDP baseline: every window materialized in a Dask cluster's memory.

PGT-I's baseline stacks all input/target windows (~(lags + horizon)x the series) as Dask arrays,
persists them once in the cluster's distributed memory, and every step gathers its batch's windows
from the cluster. Here the windows are cut lazily from the normalized series, in chunks of whole
samples, and persisted by the first rank to arrive; the other ranks on that cluster share the same
published copy. ``batch`` fetches exactly the requested rows, so batches equal ``standard``'s bit for bit.
"""

from __future__ import annotations

import hashlib
import time

import dask.array as da
import numpy as np
import torch
from distributed import Client, futures_of, wait

from pgti_core.batching.base import Batch, Strategy, load_normalized
from pgti_core.batching.dask_cluster import (
    cluster_memory_bytes,
    release_dataset,
    share_dataset,
    shutdown,
    start_local_cluster,
)
from pgti_core.batching.partitioned import PartitionedStrategy
from pgti_core.data.normalize import Normalizer
from pgti_core.data.series import Series
from pgti_core.data.windows import WindowSpec

_PROBE_STEPS = 8


def dataset_name(
    series: Series,
    spec: WindowSpec,
    starts: np.ndarray,
    normalizer: Normalizer,
    chunk_samples: int,
) -> str:
    """The name ranks publish these windows under, equal on every rank that would build equal ones.

    A digest of the series' name, shape and a few sampled steps (cheap on a memmap), the window
    spec, the split's starts, the normalizer and the chunking.
    """
    values = series.values
    digest = hashlib.sha256()
    meta = (series.name, tuple(values.shape), spec.lags, spec.horizon, chunk_samples)
    digest.update(repr((*meta, normalizer.mean, normalizer.std, normalizer.channel)).encode())
    digest.update(np.asarray(starts, dtype=np.int64).tobytes())
    for t in np.unique(np.linspace(0, len(values) - 1, _PROBE_STEPS).astype(np.int64)):
        digest.update(np.asarray(values[int(t)], dtype=np.float32).tobytes())
    return f"pgti-windows/{series.name}/{digest.hexdigest()[:32]}"


def _lazy_windows(seg: da.Array, offsets: np.ndarray, start: int, stop: int) -> da.Array:
    """Steps ``[start, stop)`` of the windows of one-chunk ``seg`` at ``offsets``, as
    ``[len(offsets), stop - start, N, F]``. Only NumPy/Dask functions run on the workers."""
    n, *tail = seg.shape
    view = seg.map_blocks(
        np.lib.stride_tricks.sliding_window_view,
        window_shape=stop,
        axis=0,
        new_axis=len(seg.shape),
        chunks=((n - stop + 1,), *((d,) for d in tail), (stop,)),
        dtype=np.float32,
    )
    cut = da.moveaxis(view[..., start:stop][offsets], -1, 1)
    return cut.map_blocks(np.ascontiguousarray, dtype=np.float32)


def _take_rows(arr: da.Array, uniq: np.ndarray) -> da.Array:
    """``arr[uniq]`` for sorted unique rows; a run of consecutive rows becomes a plain slice."""
    if uniq[-1] - uniq[0] + 1 == len(uniq):
        return arr[int(uniq[0]) : int(uniq[-1]) + 1]
    return arr[uniq]


class DaskStandardStrategy(Strategy):
    """Standard batching with the windows persisted in a Dask cluster; each step gathers its batch.

    Args:
        client: a ``distributed.Client`` (e.g. from :func:`~pgti_core.batching.dask_cluster.connect`);
            None starts a local cluster of ``dask_workers`` worker processes, owned and closed by
            :meth:`close`.
        dask_workers: workers of the owned local cluster (default 2).
        contiguous: the artifact's batch-level shuffle: each rank owns a contiguous block of starts,
            batches are runs of consecutive starts and only their order is shuffled (as
            ``partitioned``); default False (``DistributedSampler`` order, as ``standard``).
        chunk_samples: windows per Dask chunk (default 256).
        shared_name: the name the windows are published under in the cluster; ranks passing the same
            name share one persisted copy, so it must name equal windows (default:
            :func:`dataset_name`, equal on ranks building equal windows). The copy is unpublished
            when the last sharer closes.
        See :class:`~pgti_core.batching.base.Strategy` for the rest.
    """

    name = "standard-dask"

    def __init__(
        self,
        *args,
        client: Client | None = None,
        dask_workers: int = 2,
        contiguous: bool = False,
        chunk_samples: int = 256,
        shared_name: str | None = None,
        **kwargs,
    ) -> None:
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples: must be >= 1, got {chunk_samples}")
        if shared_name is not None and not shared_name:
            raise ValueError("shared_name: must be a non-empty string or None (derived)")
        self.contiguous, self.chunk_samples = contiguous, chunk_samples
        self.shared_name = shared_name
        self.dataset: str | None = None  # the published name, once this rank holds a reference
        self.built_here = False
        self._cluster = None
        self._x = self._y = None
        if client is None:
            self._cluster, client = start_local_cluster(dask_workers)
        self.client = client
        self._step_bytes: list[int] = []
        self._step_seconds: list[float] = []
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self.close()
            raise

    # ----- building: the first rank scatters the normalized series, cuts and persists the windows ---
    def _scatter_series(self, t0: int, t1: int) -> da.Array:
        """The normalized steps ``[t0, t1)`` as a Dask array whose chunks live on the workers."""
        pieces = []
        for _, block in load_normalized(self.series.values, t0, t1, self.normalizer):
            parts = [
                block[a : a + self.chunk_samples] for a in range(0, len(block), self.chunk_samples)
            ]
            futures = self.client.scatter(parts, hash=False)  # spread over the workers
            pieces += [
                da.from_delayed(f, p.shape, dtype=np.float32)
                for f, p in zip(futures, parts, strict=True)
            ]
        return da.concatenate(pieces, axis=0)

    def _build(self) -> None:
        name = self.shared_name or dataset_name(
            self.series, self.spec, self.starts, self.normalizer, self.chunk_samples
        )
        (self._x, self._y), self.built_here = share_dataset(self.client, name, self._persist)
        self.dataset = name

    def _persist(self) -> list[da.Array]:
        """Cut this split's windows from the scattered series and persist them in the cluster."""
        lags, length = self.spec.lags, self.spec.length
        t0 = int(self.starts[0])
        rel = self.starts - t0
        norm = self._scatter_series(t0, int(self.starts[-1]) + length)
        xs, ys = [], []
        for a in range(0, len(rel), self.chunk_samples):
            offsets = rel[a : a + self.chunk_samples]
            lo, hi = int(offsets[0]), int(offsets[-1]) + length
            seg = norm[lo:hi].rechunk({0: -1}, method="tasks")
            xs.append(_lazy_windows(seg, offsets - lo, 0, lags))
            ys.append(_lazy_windows(seg, offsets - lo, lags, length))
        persisted = self.client.persist([da.concatenate(xs), da.concatenate(ys)])
        with self.client.as_current():
            wait(futures_of(persisted))
        return persisted

    def _buffers(self) -> list[np.ndarray]:
        return []  # this rank holds nothing between steps; the windows live in the cluster

    # ----- sampling: DistributedSampler order, or the artifact's contiguous runs ---------------------
    def _block(self) -> np.ndarray:
        return PartitionedStrategy._block(self)

    def plan(self) -> list[np.ndarray]:
        """This epoch's batches (``contiguous``: ``partitioned``'s runs; else ``standard``'s)."""
        return PartitionedStrategy.plan(self) if self.contiguous else super().plan()

    def local_starts(self) -> np.ndarray:
        """Start indices this rank visits this epoch, in visiting order."""
        if self.contiguous:
            return PartitionedStrategy.local_starts(self)
        return super().local_starts()

    # ----- per step: gather the batch's rows from the cluster --------------------------------------
    def batch(self, starts: np.ndarray) -> Batch:
        if self._x is None:
            raise ValueError("strategy: closed; build a new one")
        rows = np.searchsorted(self.starts, np.asarray(starts, dtype=np.int64))
        uniq, inverse = np.unique(rows, return_inverse=True)
        tic = time.perf_counter()
        x, y = self.client.compute(
            [_take_rows(self._x, uniq), _take_rows(self._y, uniq)], sync=True
        )
        self._step_seconds.append(time.perf_counter() - tic)
        self._step_bytes.append(int(x.nbytes + y.nbytes))
        return self._to_device(torch.from_numpy(x[inverse]), torch.from_numpy(y[inverse]))

    # ----- reporting and teardown ----------------------------------------------------------------
    def gather_stats(self) -> dict:
        """Bytes and seconds of the per-step gathers so far (means over steps, and per step); a gather's
        seconds cover building its graph, scheduling it and fetching the rows."""
        steps = len(self._step_bytes)
        return {
            "gather_steps": steps,
            "data_bytes_per_step": float(np.mean(self._step_bytes)) if steps else 0.0,
            "gather_bytes_total": int(sum(self._step_bytes)),
            "gather_seconds_per_step": float(np.mean(self._step_seconds)) if steps else 0.0,
            "step_bytes": list(self._step_bytes),
            "step_seconds": list(self._step_seconds),
        }

    def cluster_data_bytes(self) -> int:
        """Bytes of the shared windows in the cluster as the scheduler counts them: one copy, the
        same on every rank sharing ``dataset`` (0 once closed)."""
        if self._x is None:
            return 0
        keys = [f.key for f in futures_of([self._x, self._y])]
        return int(sum(self.client.nbytes(keys=keys, summary=False).values()))

    def describe(self) -> dict:
        """Fields for the results row, plus the gather means and the cluster's memory.

        ``cluster_data_bytes`` is one copy of this split's windows, equal on every rank sharing
        ``dask_dataset`` (so sum it over distinct datasets, not over ranks); ``cluster_memory_bytes``
        is the workers' resident memory, everything the cluster holds.
        """
        stats = self.gather_stats()
        return {
            **super().describe(),
            **{k: v for k, v in stats.items() if not k.startswith("step_")},
            "contiguous": self.contiguous,
            "dask_dataset": self.dataset,
            "dask_built_here": self.built_here,
            "cluster_data_bytes": self.cluster_data_bytes(),
            "cluster_memory_bytes": cluster_memory_bytes(self.client) if self._x is not None else 0,
        }

    def close(self) -> None:
        """Drop this rank's hold on the shared windows (the last sharer's close unpublishes them) and
        shut down the cluster if this strategy started it."""
        self._x = self._y = None
        name, self.dataset = self.dataset, None
        try:
            if name is not None and self.client.status == "running":
                release_dataset(self.client, name)
        finally:
            if self._cluster is not None:
                cluster, self._cluster = self._cluster, None
                shutdown(self.client, cluster)


def gather_model(stats: dict) -> dict:
    """Per-step gather cost as ``latency_s + bytes / bandwidth_Bps``, fitted to ``gather_stats()``.

    A least-squares line through (bytes, seconds) over the steps when at least three batch sizes were
    gathered and the fit is physical (positive slope, non-negative intercept); otherwise zero latency
    and the mean bandwidth (total bytes / total seconds). ``method`` says which was used.
    """
    nbytes = np.asarray(stats["step_bytes"], dtype=np.float64)
    seconds = np.asarray(stats["step_seconds"], dtype=np.float64)
    if len(nbytes) == 0:
        raise ValueError("stats: no gather steps recorded; run some batches first")
    model = {
        "latency_s": 0.0,
        "bandwidth_Bps": float(nbytes.sum() / seconds.sum()),
        "method": "mean",
    }
    if len(np.unique(nbytes)) >= 3:
        slope, intercept = np.polyfit(nbytes, seconds, 1)
        if slope > 0 and intercept >= 0:
            model = {
                "latency_s": float(intercept),
                "bandwidth_Bps": float(1 / slope),
                "method": "lstsq",
            }
    return {**model, "steps": len(nbytes)}
