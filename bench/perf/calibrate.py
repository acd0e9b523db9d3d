"""Measure all-reduce latency and bandwidth here and fit the alpha-beta model of :mod:`bench.perf.project`.

``python -m bench.calibrate --out results/calibration.json --ranks 2 --sizes 8,1k,64k,1M,16M``
spawns local ranks (gloo on CPU, NCCL when every rank has a GPU), times ``all_reduce`` of float32
buffers at each size (per iteration the slowest rank), and fits the ring formula
``t = 2 (P-1) alpha + 2 (P-1)/P * n / beta`` to each size's fastest iteration: scheduling on a
shared host only ever adds time, so the minimum is the link's own cost, and it stays put when
another job loads the cores (under load the 64 KiB median came out 7x the fitted line).
The medians are recorded beside it (``times_median_s``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.cli import ArgumentParser, bounded, check_output_file
from bench.perf.project import save_calibration
from pgti_core.dist.group import free_port

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
_FLOAT_BYTES = 4


def parse_sizes(text: str) -> list[int]:
    """Message sizes in bytes from ``"8,1k,64k,1M,16M"`` (binary units k, M, G; case ignored)."""
    sizes = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)\s*", item, flags=re.IGNORECASE)
        if not match or int(match[1]) == 0:
            raise ValueError(f"sizes: {item!r} is not a positive byte count like 8, 64k or 16M")
        sizes.append(int(match[1]) * _UNITS[match[2].lower()])
    if len(set(sizes)) < 2:
        raise ValueError(f"sizes: need at least two different sizes to fit a line, got {text!r}")
    return sizes


_DEFAULT_SIZES_TEXT = "8,1k,64k,1M,16M"
_MAX_SIZE = 1 << 30
DEFAULT_SIZES = tuple(parse_sizes(_DEFAULT_SIZES_TEXT))
DEFAULT_ITERS, DEFAULT_WARMUP = 20, 3


def fit_ring(world_size: int, nbytes: list[int], times_s: list[float]) -> tuple[float, float]:
    """``(alpha_s, beta_Bps)`` of the ring all-reduce at ``world_size`` fitted to measured times.

    Least squares of ``t = a + b n`` weighted by ``1/t`` (relative error, so the small sizes set
    the latency and the large ones the bandwidth), with ``a >= 0``; then
    ``alpha = a / (2 (P-1))`` and ``beta = 2 (P-1) / (P b)``.
    """
    if world_size < 2:
        raise ValueError(f"world_size: need >= 2 ranks to fit an all-reduce, got {world_size}")
    n = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    if n.shape != t.shape or len(set(nbytes)) < 2 or not (t > 0).all():
        raise ValueError("times_s: need positive times for at least two different sizes")
    scale = n.max()
    design = np.stack([np.ones_like(n), n / scale], axis=1) / t[:, None]
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    if a < 0:
        a, b = 0.0, float(np.sum(n / scale / t) / np.sum((n / scale / t) ** 2))
    if b <= 0:
        raise ValueError(
            "sizes: all-reduce time does not grow with size here; add a larger size (e.g. 16M)"
        )
    slope = b / scale
    return a / (2 * (world_size - 1)), 2 * (world_size - 1) / (world_size * slope)


def calibrate(
    ranks: int = 2,
    sizes: Sequence[int] = DEFAULT_SIZES,
    iters: int = DEFAULT_ITERS,
    backend: str | None = None,
    warmup: int = DEFAULT_WARMUP,
) -> dict:
    """Time all-reduces among ``ranks`` local ranks and return the calibration record.

    Args:
        ranks (int, default 2): local ranks to spawn (>= 2).
        sizes (Sequence[int], default 8 B to 16 MiB): message sizes in bytes (rounded up to
            whole float32 elements).
        iters (int, default 20): timed all-reduces per size.
        backend (str, optional): ``"gloo"`` or ``"nccl"``; default NCCL when each rank has a GPU.
        warmup (int, default 3): untimed all-reduces per size first.
    """
    if ranks < 2:
        raise ValueError(f"ranks: need at least 2 ranks to time an all-reduce, got {ranks}")
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters/warmup: need iters >= 1 and warmup >= 0, got {iters}/{warmup}")
    backend = _backend(ranks, backend)
    nbytes = [math.ceil(s / _FLOAT_BYTES) * _FLOAT_BYTES for s in sizes]
    if min(nbytes) <= 0 or len(set(nbytes)) < 2:
        raise ValueError(f"sizes: need two or more different positive sizes, got {list(sizes)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        args = (ranks, free_port(), backend, nbytes, iters, warmup, str(out))
        mp.spawn(_rank_main, args=args, nprocs=ranks, join=True)
        measured = json.loads(out.read_text())
    times = measured["min"]
    alpha, beta = fit_ring(ranks, nbytes, times)
    return {
        "alpha_s": alpha,
        "beta_Bps": beta,
        "algorithm": "ring" if backend == "gloo" else "auto",
        "fit": "ring: t = 2(P-1) alpha + 2(P-1)/P n / beta, least squares weighted by 1/t",
        "world_size": ranks,
        "backend": backend,
        "device": "cuda" if backend == "nccl" else "cpu",
        "sizes": nbytes,
        "times_s": times,
        "times_median_s": measured["median"],
        "iters": iters,
        "warmup": warmup,
        "oversubscribed": backend == "gloo" and ranks > (cores or 1),
        "cpu_cores": cores,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "torch_version": torch.__version__,
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _backend(ranks: int, backend: str | None) -> str:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nccl_ok = dist.is_nccl_available() and ranks <= gpus
    if backend is None:
        return "nccl" if nccl_ok else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend: must be gloo or nccl, got {backend!r}")
    if backend == "nccl" and not nccl_ok:
        raise ValueError(f"backend: nccl needs CUDA and {ranks} GPUs here ({gpus} found); use gloo")
    return backend


def _rank_main(
    rank: int,
    world: int,
    port: int,
    backend: str,
    nbytes: list[int],
    iters: int,
    warmup: int,
    out: str,
) -> None:
    """One spawned rank: time the all-reduces; rank 0 writes each size's minimum and median."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        device_id=device if device.type == "cuda" else None,
    )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    try:
        bufs = [torch.zeros(n // _FLOAT_BYTES, dtype=torch.float32, device=device) for n in nbytes]
        for buf in bufs:
            for _ in range(warmup):
                dist.all_reduce(buf)
        sync()
        # Sizes interleaved within each iteration, so a burst of load on a shared host lands on
        # every size alike instead of on one size's whole run.
        elapsed = torch.empty(len(bufs), iters, dtype=torch.float64)
        for i in range(iters):
            for s, buf in enumerate(bufs):
                dist.barrier()
                sync()
                start = time.perf_counter()
                dist.all_reduce(buf)
                sync()
                elapsed[s, i] = time.perf_counter() - start
        slowest = elapsed.to(device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        if rank == 0:
            rows = slowest.cpu().tolist()
            summary = {
                "min": [min(r) for r in rows],
                "median": [statistics.median(r) for r in rows],
            }
            Path(out).write_text(json.dumps(summary))
    finally:
        dist.destroy_process_group()


def build_parser() -> ArgumentParser:
    """The command line of ``python -m bench.calibrate``."""
    parser = ArgumentParser(
        prog="python -m bench.calibrate",
        description="Time all-reduces among local ranks and fit the latency/bandwidth model "
        "that emulated sweep points use beyond this host.",
    )
    parser.add_argument("--out", default="results/calibration.json", help="JSON to write")
    parser.add_argument("--ranks", type=bounded(int, 2, 256), default=2, help="local ranks")
    parser.add_argument("--sizes", default=_DEFAULT_SIZES_TEXT, help="message bytes, k/M/G binary")
    parser.add_argument(
        "--iters", type=bounded(int, 1, 100_000), default=DEFAULT_ITERS,
        help="timed all-reduces per size",
    )  # fmt: skip
    parser.add_argument(
        "--warmup", type=bounded(int, 0, 100_000), default=DEFAULT_WARMUP,
        help="untimed all-reduces per size",
    )  # fmt: skip
    parser.add_argument(
        "--backend",
        choices=("auto", "gloo", "nccl"),
        default="auto",
        help="auto: nccl when every rank has a GPU, else gloo",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line: calibrate and write the JSON that emulated sweep points load."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # everything checked before the ranks start
        sizes = parse_sizes(args.sizes)
        if max(sizes) > _MAX_SIZE:
            raise ValueError(f"sizes: at most {_MAX_SIZE >> 30} GiB per message, got {max(sizes)}")
        backend = _backend(args.ranks, None if args.backend == "auto" else args.backend)
        try:
            check_output_file(args.out)
        except ValueError as exc:
            raise ValueError(f"--out: {exc}") from None
    except ValueError as exc:
        parser.error(str(exc))
    record = calibrate(args.ranks, sizes, args.iters, backend, args.warmup)
    if record["oversubscribed"]:
        print(f"warning: {args.ranks} ranks on {record['cpu_cores']} cores", file=sys.stderr)
    path = save_calibration(record, args.out)
    print(
        f"alpha = {record['alpha_s'] * 1e6:.1f} us, beta = {record['beta_Bps'] / 1e9:.3f} GB/s "
        f"({record['backend']}, P = {args.ranks}) -> {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
