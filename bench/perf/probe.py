"""Model-only probe: what a rank costs before any data, measured in a fresh process, cached per host.

A rank's peak host memory is its runtime (the interpreter with everything a rank imports, plus the
process group) + the model's training memory at that width and batch (parameters, optimizer
state, activations of a step, the step's batch) + the data its strategy holds. The probe measures
the first two with no dataset: a fresh process imports what a rank imports, records its PSS (the
runtime), then trains the model on synthetic batches of the rank's shape on a graph with the same
node and edge counts and records the peak (runtime + model). The result is cached as JSON under
the data cache (``<cache>/probes/``), keyed by the shape, the device, torch's version and the host,
so a sweep probes each shape once per machine. Rows then split a rank's peak into runtime, model
and data: ``host_data_peak = host_peak_pss_max_rank - host_model_peak``.

The peak PSS of the probe is exact, not sampled: its growth over the runtime is the process's
anonymous memory, so peak PSS = runtime PSS + (VmHWM - runtime RSS) with VmHWM reset at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PROBE_VERSION = 3
STEPS = 4
EXIT_OOM = 3


@dataclass(frozen=True)
class ProbeSpec:
    """The shape of one rank's training, as the probe reproduces it.

    Args:
        model: model name (``dcrnn-paper``, ``dcrnn``, ``tgcn``).
        nodes, edges, features: graph and series width.
        lags, horizon: window geometry.
        batch: samples per step on the rank.
        ddp: the rank runs in a process group with a DDP-wrapped model (world size > 1).
        device: ``cpu`` or ``cuda``.
        threads: torch/OpenMP threads of the rank.
    """

    model: str
    nodes: int
    edges: int
    features: int
    lags: int
    horizon: int
    batch: int
    ddp: bool = False
    device: str = "cpu"
    threads: int = 1

    @property
    def label(self) -> str:
        return (
            f"probe {self.model} N={self.nodes} E={self.edges} F={self.features} "
            f"{self.lags}/{self.horizon} B={self.batch}{' ddp' if self.ddp else ''} {self.device}"
        )

    def cache_key(self) -> str:
        import hashlib

        import torch

        ident = {**asdict(self), "torch": torch.__version__, "host": socket.gethostname()}
        ident["version"] = PROBE_VERSION
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProbeResult:
    """What the probe measured (bytes); ``host_model_peak`` includes the runtime.

    Args:
        host_runtime: PSS of the idle rank (imports, process group), before the model.
        host_runtime_uss: its private bytes (USS): what one more rank adds to a node whose
            processes already map the runtime's shared libraries.
        host_model_peak: exact peak PSS while training (runtime + model + batch).
        host_model_peak_sampled: the peak PSS a sampler saw (cross-check, <= the exact one).
        device_model_peak: ``torch.cuda.max_memory_allocated`` on CUDA, else ``None``.
        seconds: wall time of the measured steps.
        spec: the :class:`ProbeSpec` as a dict.
    """

    host_runtime: int
    host_runtime_uss: int | None
    host_model_peak: int
    host_model_peak_sampled: int | None
    device_model_peak: int | None
    seconds: float
    spec: dict


class ProbeError(RuntimeError):
    """The probe process failed; ``status`` is ``oom`` or ``failed`` for the results row."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def probe_path(spec: ProbeSpec, cache_dir: str | os.PathLike | None = None) -> Path:
    from pgti_core.data.cache import cache_root

    return cache_root(cache_dir) / "probes" / f"{spec.cache_key()}.json"


def cached_probe(spec: ProbeSpec, cache_dir: str | os.PathLike | None = None) -> ProbeResult | None:
    """The cached result for ``spec`` on this machine, or ``None``."""
    try:
        return ProbeResult(**json.loads(probe_path(spec, cache_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def model_probe(
    spec: ProbeSpec,
    cache_dir: str | os.PathLike | None = None,
    *,
    timeout_s: float = 900.0,
    refresh: bool = False,
) -> ProbeResult:
    """The cached probe of ``spec``, measuring it first in a fresh process if it is missing.

    Raises:
        ProbeError: the probe was killed (``oom``), ran out of memory, crashed or timed out; the
            message names the probe.
    """
    if not refresh and (hit := cached_probe(spec, cache_dir)) is not None:
        return hit
    path = probe_path(spec, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    env = dict(os.environ, OMP_NUM_THREADS=str(spec.threads), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "bench.perf.probe", "--spec", json.dumps(asdict(spec)), "--out"]
    try:
        try:
            proc = subprocess.run(
                [*cmd, tmp], env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise ProbeError("failed", f"{spec.label}: timed out after {timeout_s:g} s") from None
        if proc.returncode != 0:
            raise _probe_error(spec, proc.returncode, proc.stderr)
        result = ProbeResult(**json.loads(Path(tmp).read_text()))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return result


def _probe_error(spec: ProbeSpec, code: int, stderr: str) -> ProbeError:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1][:200] if lines else ""
    if code == -signal.SIGKILL:
        return ProbeError("oom", f"{spec.label}: killed by SIGKILL (out of memory, most likely)")
    if code == EXIT_OOM:
        return ProbeError("oom", f"{spec.label}: out of memory ({last})")
    return ProbeError("failed", f"{spec.label}: exit {code} ({last})")


def probe_graph(nodes: int, edges: int):
    """``edges`` distinct directed edges over ``nodes`` nodes, no self-loops (ring neighbours)."""
    import numpy as np

    per = max(1, -(-edges // nodes))
    if per >= nodes:
        raise ValueError(f"edges: {edges} edges need more than {nodes} nodes allow")
    src = np.repeat(np.arange(nodes), per)
    dst = (src + np.tile(np.arange(1, per + 1), nodes)) % nodes
    index = np.stack([src, dst])[:, :edges].astype(np.int64)
    return index, np.ones(index.shape[1], dtype=np.float32)


class SyntheticBatches:
    """Stands in for a strategy in the trainer: every batch fresh random tensors of the rank's
    shape (allocated per step, as a gather allocates them), :data:`STEPS` batches an epoch."""

    def __init__(self, spec: ProbeSpec, device) -> None:
        import torch

        self.spec, self.device = spec, device
        self._gen = torch.Generator().manual_seed(0)

    def set_epoch(self, epoch: int) -> None:
        """Nothing to reshuffle."""

    def plan(self) -> list:
        import numpy as np

        return [np.arange(self.spec.batch)] * STEPS

    def batch(self, starts):
        import torch

        s = self.spec
        x = torch.randn(len(starts), s.lags, s.nodes, s.features, generator=self._gen)
        y = torch.randn(len(starts), s.horizon, s.nodes, s.features, generator=self._gen)
        return x.to(self.device), y.to(self.device)

    def batches(self, plan: list):
        """``(starts, batch)`` per plan entry, as :meth:`Strategy.batches` yields them."""
        for starts in plan:
            yield starts, self.batch(starts)


def measure(spec: ProbeSpec) -> ProbeResult:
    """Measure ``spec`` in this process (run in a fresh one: see :func:`model_probe`)."""
    import torch

    import bench.sweep.worker  # noqa: F401 - a rank's imports: the runtime is what they cost
    from pgti_core.data.normalize import Normalizer
    from pgti_core.instruments.memory import HostMemorySampler
    from pgti_core.models.registry import build_model
    from pgti_core.train.loop import fit

    torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    with tempfile.TemporaryDirectory() as tmp:
        if spec.ddp:
            torch.distributed.init_process_group(
                "nccl" if device.type == "cuda" else "gloo",
                init_method=f"file://{tmp}/store",
                rank=0,
                world_size=1,
            )
        sampler = HostMemorySampler(interval_s=0.02, max_overhead=0.3).start()
        edge_index, edge_weight = probe_graph(spec.nodes, spec.edges)
        model = build_model(
            spec.model,
            num_nodes=spec.nodes,
            num_features=spec.features,
            edge_index=edge_index,
            edge_weight=edge_weight,
            lags=spec.lags,
            horizon=spec.horizon,
        ).to(device)
        if spec.ddp:
            ids = [device.index or 0] if device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=ids, broadcast_buffers=False
            )
        batches = SyntheticBatches(spec, device)
        t0 = time.perf_counter()
        # the trainer's own loop (references held across steps as it holds them, Adam, the
        # validation and test passes), so the probe's peak is the loop's, not a lookalike's
        fit(
            model,
            batches,
            batches,
            Normalizer(mean=50.0, std=10.0),
            epochs=1,
            test=batches,
            max_steps=STEPS,
            max_eval_steps=1,
        )
        seconds = time.perf_counter() - t0
        host = sampler.stop()
        device_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        if spec.ddp:
            torch.distributed.destroy_process_group()
    base = host.baseline
    exact = None
    if host.vmhwm is not None and host.vmhwm_since_start and base.pss is not None:
        exact = base.pss + host.vmhwm - base.rss
    sampled = host.peak.pss
    measured = [v for v in (exact, sampled) if v is not None]
    peak = max(measured) if measured else host.peak.rss
    return ProbeResult(
        host_runtime=int(base.pss if base.pss is not None else base.rss),
        host_runtime_uss=None if base.uss is None else int(base.uss),
        host_model_peak=int(peak),
        host_model_peak_sampled=None if sampled is None else int(sampled),
        device_model_peak=None if device_peak is None else int(device_peak),
        seconds=seconds,
        spec=asdict(spec),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.perf.probe",
        description="Measure one model-only probe (used by bench.run; see the module docstring).",
    )
    p.add_argument("--spec", required=True, help="ProbeSpec as JSON")
    p.add_argument("--out", required=True, type=Path, help="where the result JSON is written")
    args = p.parse_args(argv)
    try:
        spec = ProbeSpec(**json.loads(args.spec))
    except (ValueError, TypeError) as exc:
        p.error(f"--spec: {exc}")
    try:
        result = measure(spec)
    except MemoryError as exc:
        print(f"MemoryError: {exc}", file=sys.stderr)
        return EXIT_OOM
    except RuntimeError as exc:
        print(
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr
        )
        return EXIT_OOM if "out of memory" in str(exc).lower() else 1
    args.out.write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
