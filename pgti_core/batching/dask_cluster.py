"""Dask cluster lifecycle for the ``standard-dask`` baseline: a local cluster, or an HPC site's one.

The paper's standard-DDP baseline persists its windows in a Dask cluster's distributed memory. Here
that cluster is either a ``LocalCluster`` of worker processes on this host, or an existing one started
with ``dask scheduler --scheduler-file F`` and ``dask worker --scheduler-file F`` (as on Polaris).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import psutil
from distributed import Client, LocalCluster

_FREE_MEMORY_SHARE = 0.8

# Windows must stay in worker memory (the baseline's premise), so workers never spill them to disk;
# pausing and the nanny's terminate threshold keep their defaults.
_NO_SPILL = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False}


def start_local_cluster(
    n_workers: int,
    memory_limit: int | str | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
) -> tuple[LocalCluster, Client]:
    """Start a ``LocalCluster`` and a client to it; the caller closes both (see :func:`shutdown`).

    Args:
        n_workers: worker count (>= 1).
        memory_limit: per-worker limit in bytes or a Dask string such as ``"2GB"`` (default: 80% of
            the host's available memory split evenly across the workers).
        threads_per_worker: threads per worker (default 1).
        processes: worker processes, as on the paper's cluster (default True); False runs the workers
            as threads of this process.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers: must be >= 1, got {n_workers}")
    if threads_per_worker < 1:
        raise ValueError(f"threads_per_worker: must be >= 1, got {threads_per_worker}")
    if memory_limit is None:
        memory_limit = int(psutil.virtual_memory().available * _FREE_MEMORY_SHARE) // n_workers
    with dask.config.set(_NO_SPILL):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            memory_limit=memory_limit,
            dashboard_address=":0",  # any free port: clusters may run side by side
        )
    try:
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return cluster, client


def connect(scheduler_file: str | os.PathLike, timeout: float = 60.0) -> Client:
    """A client to a running cluster described by ``dask scheduler --scheduler-file``.

    Args:
        scheduler_file: the JSON file the scheduler wrote.
        timeout: seconds to wait for the scheduler to answer (default 60).
    """
    path = Path(scheduler_file)
    if not path.is_file():
        raise ValueError(
            f"scheduler_file: {path} not found; start `dask scheduler --scheduler-file {path}` first"
        )
    return Client(scheduler_file=str(path), timeout=timeout, set_as_default=False)


def shutdown(client: Client | None, cluster: LocalCluster | None = None) -> None:
    """Close ``client`` and then ``cluster``; the cluster is closed even if closing the client fails."""
    try:
        if client is not None:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


@contextmanager
def dask_client(
    n_workers: int = 2,
    *,
    scheduler_file: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
) -> Iterator[Client]:
    """A client for the ``with`` body; whatever this started is closed on exit, error or not.

    With ``scheduler_file`` it connects to that cluster and closes only its client; otherwise it starts
    a local cluster (see :func:`start_local_cluster`) and shuts it and its workers down.
    """
    if scheduler_file is not None:
        client, cluster = connect(scheduler_file), None
    else:
        cluster, client = start_local_cluster(
            n_workers, memory_limit, threads_per_worker, processes
        )
    try:
        yield client
    finally:
        shutdown(client, cluster)


def cluster_memory_bytes(client: Client) -> int:
    """Resident memory (RSS) of the cluster's worker processes at their last heartbeat, summed; a
    process is counted once even when several workers share it (``processes=False``)."""
    pids = client.run(os.getpid)  # a stdlib function, so workers need not import this package
    workers = client.scheduler_info(n_workers=-1)["workers"]
    per_process = {
        (w["host"], pids[a]): w["metrics"]["memory"] for a, w in workers.items() if a in pids
    }
    return int(sum(per_process.values()))
