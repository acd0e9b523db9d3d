"""The paper's standard-DDP baseline: every window materialized in a Dask cluster's memory.

PGT-I's baseline stacks all input/target windows (~(lags + horizon)x the series) as Dask arrays,
persists them in the cluster's distributed memory, and every step gathers its batch's windows from
the cluster. Here the windows are cut lazily from the normalized series, in chunks of whole samples,
and persisted; ``batch`` fetches exactly the requested rows, so batches equal ``standard``'s bit for bit.
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np
import torch
from distributed import Client, futures_of, wait

from pgti_core.batching.base import Batch, Strategy, load_normalized
from pgti_core.batching.dask_cluster import cluster_memory_bytes, shutdown, start_local_cluster
from pgti_core.batching.partitioned import PartitionedStrategy


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
        **kwargs,
    ) -> None:
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples: must be >= 1, got {chunk_samples}")
        self.contiguous, self.chunk_samples = contiguous, chunk_samples
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

    # ----- building: the normalized series is scattered, the windows are cut and persisted there ----
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
        x, y = da.concatenate(xs), da.concatenate(ys)
        self._x, self._y = self.client.persist([x, y])
        with self.client.as_current():
            wait(futures_of([self._x, self._y]))

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

    def describe(self) -> dict:
        """Fields for the results row, plus the gather means and the cluster's memory."""
        stats = self.gather_stats()
        return {
            **super().describe(),
            **{k: v for k, v in stats.items() if not k.startswith("step_")},
            "contiguous": self.contiguous,
            "cluster_data_bytes": int(self._x.nbytes + self._y.nbytes)
            if self._x is not None
            else 0,
            "cluster_memory_bytes": cluster_memory_bytes(self.client) if self._x is not None else 0,
        }

    def close(self) -> None:
        """Release the persisted windows and shut down the cluster if this strategy started it."""
        self._x = self._y = None
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
