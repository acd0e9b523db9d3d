"""Description of the machine a run measured (CPU, RAM, GPUs, driver, library versions, launcher
environment, git commit), written once per run as JSON beside the results CSV."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import psutil
import torch

from pgti_core.instruments.device import nvml

ENV_PREFIXES = ("NCCL_", "FI_", "SLURM_", "PBS_", "PALS_", "TORCHELASTIC_")
ENV_NAMES = (
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


BUILT_SHA = Path(__file__).resolve().parents[1] / "GIT_SHA"
"""Commit a wheel was built from, written by the build (``setup.py``); absent in a checkout."""


def git_sha(path: str | Path | None = None) -> str | None:
    """Commit this code came from: for the package (``path=None``), the one recorded when its wheel
    was built, else that of the git checkout holding it; for ``path``, that checkout's. ``None``
    when neither is known.

    The recorded commit comes first: a wheel installed into a virtualenv that sits inside some
    other checkout (asv's environments do) would otherwise report that checkout's HEAD.
    """
    if path is None and BUILT_SHA.is_file():
        return BUILT_SHA.read_text().strip() or None
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def package_version(name: str) -> str | None:
    """Installed version of a distribution, ``None`` if absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def launcher_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that shape a distributed run (launcher, NCCL, fabric, threads)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in sorted(env.items()) if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}


def _nvml_gpus(pynvml: ModuleType) -> list[dict]:
    found = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        memory = int(pynvml.nvmlDeviceGetMemoryInfo(h).total)
        name, uuid = pynvml.nvmlDeviceGetName(h), pynvml.nvmlDeviceGetUUID(h)
        found.append({"index": i, "name": name, "memory_bytes": memory, "uuid": uuid})
    return found


def gpus() -> tuple[list[dict], str | None, str]:
    """``(gpus, driver, source)``: every GPU NVML sees (else those torch sees) with name, memory, UUID."""
    with nvml() as (pynvml, reason):
        if pynvml is not None:
            try:
                return _nvml_gpus(pynvml), pynvml.nvmlSystemGetDriverVersion(), "nvml"
            except pynvml.NVMLError as e:
                reason = f"NVML query failed: {e}"
    if not torch.cuda.is_available():
        return [], None, f"none ({reason})"
    found = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        found.append(
            {"index": i, "name": p.name, "memory_bytes": int(p.total_memory), "uuid": str(p.uuid)}
        )
    return found, None, f"torch ({reason})"


def _nccl_version() -> str | None:
    if not torch.cuda.is_available() or not torch.distributed.is_nccl_available():
        return None
    v = torch.cuda.nccl.version()
    return ".".join(map(str, v)) if isinstance(v, tuple) else str(v)


def describe_system() -> dict:
    """A JSON-ready description of this host and its software for the results of a run."""
    mem = psutil.virtual_memory()
    gpu_list, driver, gpu_source = gpus()
    uname = platform.uname()
    return {
        "hostname": socket.gethostname(),
        "os": f"{uname.system} {uname.release}",
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_total_bytes": int(mem.total),
        "ram_available_bytes": int(mem.available),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "nccl": _nccl_version(),
        "torch_geometric": package_version("torch_geometric"),
        "numpy": package_version("numpy"),
        "pgti": package_version("pgti"),
        "gpu_driver": driver,
        "gpus": gpu_list,
        "gpu_source": gpu_source,
        "git_sha": git_sha(),
        "env": launcher_env(),
    }


def write_system_json(path: str | Path, extra: dict | None = None) -> dict:
    """Write :func:`describe_system` (updated with ``extra``) to ``path`` atomically; returns it."""
    path = Path(path)
    info = describe_system()
    info.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(info, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return info
