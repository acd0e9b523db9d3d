"""How much of the host's CPU other work took while a point ran (the point's foreign load).

Foreign CPU = the busy time of the usable cores from ``/proc/stat`` during the point minus the
CPU time of the point's own processes (this process and its waited-for children: the ranks, and
a local Dask cluster's workers). Divided by the cores' capacity over the point's wall time it is
``host_foreign_cpu_frac``: 0 on a quiet host, 0.5 when another process kept one of two cores busy.
A point above :data:`NOISY_FRAC` is flagged ``noisy``: its times include contention.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

# above this share of the cores' time taken by others, a point's times are not trusted as scaling
NOISY_FRAC = 0.10


def _host_busy_s(cpus: frozenset[int]) -> float:
    """Busy seconds so far of ``cpus`` (everything but idle and iowait), from ``/proc/stat``."""
    per_cpu = psutil.cpu_times(percpu=True)
    return sum(
        sum(t) - t.idle - getattr(t, "iowait", 0.0) for i, t in enumerate(per_cpu) if i in cpus
    )


def _own_s() -> float:
    """CPU seconds of this process and its reaped children (children included recursively)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class ForeignLoad:
    """The outcome of one :class:`NoiseMeter`: foreign share of the cores and its inputs."""

    foreign_frac: float
    host_busy_s: float
    own_cpu_s: float
    wall_s: float
    cores: int

    @property
    def noisy(self) -> bool:
        return self.foreign_frac > NOISY_FRAC


def foreign_frac(host_busy_s: float, own_cpu_s: float, wall_s: float, cores: int) -> float:
    """Share of ``cores`` x ``wall_s`` that was busy with work other than the point's own, in [0, 1]."""
    capacity = max(wall_s, 1e-9) * max(cores, 1)
    return min(1.0, max(0.0, (host_busy_s - own_cpu_s) / capacity))


class NoiseMeter:
    """``start()`` before a point's processes start, ``stop()`` after they are all reaped."""

    def __init__(self) -> None:
        self.cpus = frozenset(os.sched_getaffinity(0))
        self._t0 = self._busy0 = self._own0 = 0.0

    def start(self) -> NoiseMeter:
        self._t0, self._busy0, self._own0 = time.perf_counter(), _host_busy_s(self.cpus), _own_s()
        return self

    def stop(self) -> ForeignLoad:
        wall = time.perf_counter() - self._t0
        busy = _host_busy_s(self.cpus) - self._busy0
        own = _own_s() - self._own0
        frac = foreign_frac(busy, own, wall, len(self.cpus))
        return ForeignLoad(frac, busy, own, wall, len(self.cpus))
