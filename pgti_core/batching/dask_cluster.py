"""Dask cluster lifecycle for the ``standard-dask`` baseline: a local cluster, or an HPC site's one.

The paper's standard-DDP baseline persists its windows once in a Dask cluster's distributed memory.
Here that cluster is either a ``LocalCluster`` of worker processes on this host, or an existing one
started with ``dask scheduler --scheduler-file F`` and ``dask worker --scheduler-file F`` (as on
Polaris); ranks share one persisted copy through :func:`share_dataset` / :func:`release_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import psutil
from distributed import Client, LocalCluster, Lock, Variable

_FREE_MEMORY_SHARE = 0.8
# A published dataset's reference count is always set; this only bounds the wait on a fault.
_REFS_TIMEOUT = "30 s"

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


def connect(target: str | os.PathLike, timeout: float = 60.0) -> Client:
    """A client to a running cluster, given its scheduler's address or its scheduler file.

    Args:
        target: an address such as ``"tcp://10.0.0.1:8786"`` (anything containing ``://``), or the
            JSON file written by ``dask scheduler --scheduler-file``.
        timeout: seconds to wait for the scheduler to answer (default 60).
    """
    if "://" in str(target):
        return Client(str(target), timeout=timeout, set_as_default=False)
    path = Path(target)
    if not path.is_file():
        raise ValueError(
            f"scheduler: no scheduler file at {path} and not an address (tcp://host:port); "
            f"start `dask scheduler --scheduler-file {path}` first"
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
    scheduler: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
) -> Iterator[Client]:
    """A client for the ``with`` body; whatever this started is closed on exit, error or not.

    With ``scheduler`` (an address or a scheduler file, see :func:`connect`) it joins that cluster and
    closes only its client; otherwise it starts a local cluster (see :func:`start_local_cluster`) and
    shuts it and its workers down.
    """
    if scheduler is not None:
        client, cluster = connect(scheduler), None
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


def _lock(client: Client, name: str) -> Lock:
    """The cluster-wide lock guarding dataset ``name`` and its reference count."""
    return Lock(f"{name}/lock", scheduler_rpc=client.scheduler, loop=client.loop)


def share_dataset(client: Client, name: str, build: Callable[[], object]) -> tuple[object, bool]:
    """The dataset published as ``name``; the first caller builds it with ``build()`` (which returns
    persisted collections) and publishes it, later callers get the same keys. Returns the dataset and
    whether this call built it. Every call takes a reference that :func:`release_dataset` returns.

    A cluster-wide ``distributed.Lock`` serializes callers (no torch process group is needed), so
    concurrent ranks build once. Should the lock's lease lapse mid-build (a client silent for the
    lease timeout), a second builder finds the name taken when publishing and uses the first copy.
    """
    refs = Variable(f"{name}/refs", client=client)
    with _lock(client, name):
        data = client.get_dataset(name, default=None)
        built = data is None
        count = 0 if built else refs.get(timeout=_REFS_TIMEOUT)
        if built:
            data = build()
            try:
                client.publish_dataset(data, name=name)
            except KeyError:  # published meanwhile: keep that copy, drop ours
                data, built = client.get_dataset(name), False
                count = refs.get(timeout=_REFS_TIMEOUT)
        refs.set(count + 1)
    return data, built


def release_dataset(client: Client, name: str) -> None:
    """Return a reference taken by :func:`share_dataset`; the last one unpublishes ``name``, so its
    data is freed once no client holds its futures. References of ranks that die without releasing
    keep it published until the cluster shuts down."""
    refs = Variable(f"{name}/refs", client=client)
    with _lock(client, name):
        count = refs.get(timeout=_REFS_TIMEOUT) - 1
        if count > 0:
            refs.set(count)
            return
        client.unpublish_dataset(name)
        refs.delete()
