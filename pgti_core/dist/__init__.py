"""Distributed runs: where a process stands (launcher environment, device) and its process group."""

from pgti_core.dist.env import (
    BACKENDS,
    LAUNCHERS,
    DistEnv,
    detect_env,
    device_for,
    first_host,
    iter_hosts,
    resolve_backend,
)
from pgti_core.dist.group import (
    Group,
    all_reduce_sum,
    barrier,
    broadcast_object,
    distributed,
    free_port,
    gather_objects,
    init_group,
    is_initialized,
    is_main,
    teardown,
)

__all__ = [
    "BACKENDS",
    "LAUNCHERS",
    "DistEnv",
    "detect_env",
    "device_for",
    "first_host",
    "iter_hosts",
    "resolve_backend",
    "Group",
    "init_group",
    "teardown",
    "distributed",
    "is_initialized",
    "is_main",
    "barrier",
    "all_reduce_sum",
    "broadcast_object",
    "gather_objects",
    "free_port",
]
