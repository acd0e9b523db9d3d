"""``python -m bench.gpu.nccl --worlds 1,2``: the NCCL process group at each world size, every rank
on this host's first GPU.

Each world spawns its ranks, starts a real ``nccl`` group (also at world size 1, where training
makes none), all-reduces ``rank + 1`` over 1 Mi floats, checks every element equals
``P (P + 1) / 2``, and times the all-reduce (median of 20, slowest rank). Several ranks on one
GPU is what NCCL may refuse ("Duplicate GPU detected"): that world is then recorded as skipped
with NCCL's reason, any other error as failed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.cli import int_list
from bench.gpu.rows import append_rows, device_label, first_line, row
from pgti_core.dist.group import free_port
from pgti_core.instruments.timing import device_sync

NUMEL = 1 << 20
ITERS = 20
REFUSED = ("Duplicate GPU", "duplicate GPU")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.nccl", description=__doc__)
    p.add_argument("--worlds", type=int_list, default=[1, 2], help="world sizes to start")
    p.add_argument("--out", required=True, help="checks CSV to append rows to")
    p.add_argument("--timeout", type=float, default=40.0, help="seconds per world")
    return p


def _rank(rank: int, world: int, port: int, timeout_s: float, backend: str, results) -> None:
    try:
        device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
        sync = device_sync(device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout_s),
            device_id=device if backend == "nccl" else None,
        )
        t = torch.full((NUMEL,), float(rank + 1), device=device)
        dist.all_reduce(t)
        sync()
        exact = bool(torch.all(t == world * (world + 1) / 2).item())
        times = []
        for _ in range(ITERS):
            sync()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            sync()
            times.append(time.perf_counter() - t0)
        dist.destroy_process_group()
        results.put((rank, exact, statistics.median(times), ""))
    except Exception as e:  # noqa: BLE001 - reported to the parent as this rank's result
        results.put((rank, False, None, first_line(e)))


def run_world(world: int, timeout_s: float, backend: str = "nccl") -> dict:
    """Start ``world`` ranks (on GPU 0 for nccl; gloo on the CPU tests this logic); one row."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_rank, args=(r, world, port, timeout_s, backend, results))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    got, deadline = [], time.monotonic() + timeout_s + 20
    while len(got) < world and time.monotonic() < deadline:
        try:
            got.append(results.get(timeout=1.0))
        except Exception:  # noqa: BLE001 - queue.Empty: keep waiting until the deadline
            if not any(p.is_alive() for p in procs) and results.empty():
                break
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()
    case = f"world {world}"
    dev = device_label() if backend == "nccl" else f"cpu ({backend})"
    errors = [e for _, _, _, e in sorted(got) if e]
    if len(got) < world and not errors:
        errors = [f"timeout: {world - len(got)} rank(s) gave no result in {timeout_s:.0f} s"]
    if errors:
        status = "skipped" if any(s in errors[0] for s in REFUSED) else "failed"
        return row(backend, case, status, device=dev, error=errors[0])
    slowest = max(t for _, _, t, _ in got)
    exact = all(ok for _, ok, _, _ in got)
    return row(backend, case, "ok" if exact else "failed", device=dev, value=slowest * 1e6,
               unit="us/all-reduce 4 MiB", error="" if exact else "all-reduce sum is wrong")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available() or not dist.is_nccl_available():
        print(
            "bench.gpu.nccl: no CUDA device or no NCCL in this torch; nothing run", file=sys.stderr
        )
        return 1
    rows = [run_world(w, args.timeout) for w in args.worlds]
    append_rows(args.out, rows)
    for r in rows:
        print(f"nccl {r['case']}: {r['status']} {r.get('value', '')} {r.get('error', '')}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
