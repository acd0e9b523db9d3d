"""Ranks that die with the sweep, and kills told apart: what the launcher and its ranks do so that
no rank outlives a killed sweep, no temporary directory outlives its sweep, and a rank killed by
SIGKILL is ``oom`` only with evidence of the kernel's OOM killer.

- :func:`die_with_parent` runs in each rank right after ``fork`` (``preexec_fn``): Linux's
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` kills it when the launcher dies, however it dies.
- :func:`watch_parent` is the fallback inside the rank (other systems, or a parent that died
  before the ``prctl``): a daemon thread that kills the rank's process group once its parent
  is gone.
- :func:`owned_tempdir` / :func:`clean_stale_tempdirs`: each point's directory records its
  owner's pid and start time; the next start removes directories whose owner is dead.
- :func:`sigterm_as_interrupt`: SIGTERM raises :class:`Stop` (a ``KeyboardInterrupt``), so a
  terminated sweep cleans up exactly as after Ctrl-C.
- :func:`oom_kills`: the cgroup's ``oom_kill`` counter (``memory.events`` on cgroup v2,
  ``memory.oom_control`` on v1, else the host's in ``/proc/vmstat``), read before and after a
  point.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

PARENT_VAR = "PGTI_PARENT_PID"
OOM_COUNTER_VAR = "PGTI_OOM_COUNTER"  # testing hook: a file holding 'oom_kill N'
TEMP_PREFIX = "pgti-point-"
_OWNER = "owner"
_PR_SET_PDEATHSIG = 1

try:
    _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the parent watch alone
    _prctl = None


def die_with_parent() -> None:
    """``preexec_fn`` of a rank: ask the kernel to SIGKILL it when its parent dies.

    Only a foreign-function call (no allocation, no locks), as is safe between fork and exec.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def watch_parent(interval_s: float = 0.5) -> None:
    """In a rank: kill this process group when the launcher named in ``$PGTI_PARENT_PID`` is no
    longer this process's parent (it died and the rank was reparented)."""
    expected = os.environ.get(PARENT_VAR)
    if not expected:
        return

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(interval_s)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    if os.getppid() != int(expected):
        watch()
    threading.Thread(target=watch, name="pgti-parent-watch", daemon=True).start()


class Stop(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C; ``args[0]`` is the signal number."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Stop` in the main thread."""

    def handler(signum: int, _frame: object) -> None:
        raise Stop(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@contextlib.contextmanager
def owned_tempdir() -> Iterator[Path]:
    """A temporary directory for one point, stamped with this process as its owner and removed
    on leaving (a SIGKILLed owner leaves it to :func:`clean_stale_tempdirs`)."""
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as tmp:
        me = os.getpid()
        (Path(tmp) / _OWNER).write_text(f"{me} {_start_time(me)!r}")
        yield Path(tmp)


def clean_stale_tempdirs(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove point directories under ``root`` (default: the temp dir) whose owner is dead;
    returns what was removed. A directory still being set up (no owner yet) is left alone."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            pid, started = (path / _OWNER).read_text().split()
            alive = _start_time(int(pid))
            stale = alive is None or repr(alive) != started
        except (OSError, ValueError):
            stale = path.is_dir() and time.time() - path.stat().st_mtime > 3600
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _counter_files() -> list[Path]:
    if os.environ.get(OOM_COUNTER_VAR):
        return [Path(os.environ[OOM_COUNTER_VAR])]
    files = [Path("/sys/fs/cgroup/memory/memory.oom_control")]  # cgroup v1
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, _, rel = line.split(":", 2)
            if hierarchy == "0":  # cgroup v2: this cgroup and its ancestors
                here = Path("/sys/fs/cgroup") / rel.lstrip("/")
                files += [d / "memory.events" for d in (here, *here.parents)]
    files.append(Path("/proc/vmstat"))  # the host's count, where no cgroup has one
    return [f for f in files if f.is_file()]


def oom_kills() -> int | None:
    """The OOM killer's kill count for this process's cgroup (None where no counter is found)."""
    for path in _counter_files():
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
    return None
