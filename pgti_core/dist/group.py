"""The default process group of a run: start it from a :class:`DistEnv` (nccl on GPUs, gloo
otherwise; none at world size 1), tear it down on success and on error, and the few collectives
the trainer and harness use, each a no-op without a group so one code path serves every world."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from pgti_core.dist.env import DistEnv, device_for, resolve_backend


@dataclass(frozen=True)
class Group:
    """A started run: this rank's place, its backend and device, and whether a process group
    exists (``False`` at world size 1).

    Args:
        env (DistEnv): this process's place in the run.
        backend (str): ``nccl`` or ``gloo``.
        device (torch.device): where this rank trains.
        initialized (bool): whether :func:`init_group` started a process group.
    """

    env: DistEnv
    backend: str
    device: torch.device
    initialized: bool


def free_port() -> int:
    """A TCP port free on this host right now, for a local rendezvous (another process may
    still take it before rank 0 binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_initialized() -> bool:
    """Whether a default process group exists in this process."""
    return dist.is_available() and dist.is_initialized()


def init_group(
    env: DistEnv, backend: str | None = None, timeout_s: float = 300.0, cuda: bool | None = None
) -> Group:
    """Start this rank's default process group over TCP at ``env.master_addr:master_port``, and
    select its CUDA device. At world size 1 no group is made (plain single-process training).

    Args:
        env (DistEnv): from :func:`detect_env` or :meth:`DistEnv.local`.
        backend (str, optional): ``nccl`` or ``gloo`` (default: nccl when CUDA is available).
        timeout_s (float, default 300): rendezvous and collective timeout in seconds.
        cuda (bool, optional): train on CUDA (default: whenever CUDA is available).
    """
    backend = resolve_backend(backend)
    if not timeout_s > 0:
        raise ValueError(f"timeout_s: expected seconds > 0, got {timeout_s!r}")
    device = device_for(env, backend, cuda)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if env.world_size == 1:
        return Group(env, backend, device, initialized=False)
    if not dist.is_available():
        raise ValueError("world_size: this torch has no torch.distributed; run a single process")
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialized; call teardown() first")
    host = f"[{env.master_addr}]" if ":" in env.master_addr else env.master_addr
    dist.init_process_group(
        backend,
        init_method=f"tcp://{host}:{env.master_port}",
        rank=env.rank,
        world_size=env.world_size,
        timeout=timedelta(seconds=timeout_s),
        device_id=device if backend == "nccl" else None,
    )
    return Group(env, backend, device, initialized=True)


def teardown() -> None:
    """Destroy the default process group if there is one (safe to call twice)."""
    if is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(
    env: DistEnv, backend: str | None = None, timeout_s: float = 300.0, cuda: bool | None = None
) -> Iterator[Group]:
    """``with distributed(env) as group:`` starts the group (as :func:`init_group`), and on leaving
    waits for every rank (on success only: a failed rank's peers may never arrive) and tears down."""
    group = init_group(env, backend, timeout_s, cuda)
    try:
        yield group
        barrier()
    finally:
        teardown()


def is_main() -> bool:
    """Whether this process is rank 0 of the group (or there is no group)."""
    return not is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank; a no-op without a group."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks in place and return it; unchanged without a group."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj``, on every rank; ``obj`` itself without a group."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any, dst: int = 0) -> list[Any] | None:
    """Every rank's picklable ``obj`` in rank order on rank ``dst``, ``None`` on the others (how
    the harness collects per-rank measurements); ``[obj]`` without a group."""
    if not is_initialized():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out
