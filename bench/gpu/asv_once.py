"""``python -m bench.gpu.asv_once``: run every asv benchmark of ``benchmarks/bench_device.py`` once,
in-process (the GPU machine has no asv): each class's ``setup`` per parameter, then each
``time_*`` method timed once (wall seconds) and each ``track_*`` value recorded. A benchmark
whose ``setup`` raises ``NotImplementedError`` is skipped, as asv does.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import itertools
import sys
import time

import torch

from bench.gpu.rows import append_rows, device_label, first_line, row

MODULE = "benchmarks.bench_device"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.asv_once", description=__doc__)
    p.add_argument("--module", default=MODULE, help="asv benchmark module to run")
    p.add_argument("--out", required=True, help="checks CSV to append rows to")
    return p


def benchmarks(module: str) -> list[tuple[str, type, tuple]]:
    """``(name, class, params)`` for every benchmark method of every class in ``module``."""
    found = []
    for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass):
        if cls.__module__ != module:
            continue
        grids = getattr(cls, "params", [[]])
        for params in itertools.product(*grids) if grids and grids[0] else [()]:
            for name in dir(cls):
                if name.startswith(("time_", "track_")):
                    found.append((f"{cls.__name__}.{name}", cls, params))
    return found


def run_once(name: str, cls: type, params: tuple, dev: str) -> dict:
    case, method = f"{name}({', '.join(map(str, params))})", name.split(".", 1)[1]
    bench = cls()
    try:
        if hasattr(bench, "setup"):
            bench.setup(*params)
        t0 = time.perf_counter()
        value = getattr(bench, method)(*params)
        seconds = time.perf_counter() - t0
        if hasattr(bench, "teardown"):
            bench.teardown(*params)
    except NotImplementedError as e:
        return row("asv", case, "skipped", device=dev, error=first_line(e))
    except Exception as e:  # noqa: BLE001 - a failing benchmark is a result of the check
        return row("asv", case, "failed", device=dev, error=first_line(e))
    if method.startswith("track_"):
        return row("asv", case, "ok", device=dev, value=value, unit="track")
    return row("asv", case, "ok", device=dev, value=seconds, unit="s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        found = benchmarks(args.module)
    except ImportError as e:
        parser.error(f"--module: cannot import {args.module!r}: {e}")
    if not torch.cuda.is_available():
        print(
            "bench.gpu.asv_once: no CUDA device; the device benchmarks would all skip",
            file=sys.stderr,
        )
        return 1
    rows = [run_once(name, cls, params, device_label()) for name, cls, params in found]
    append_rows(args.out, rows)
    for r in rows:
        print(f"asv {r['case']}: {r['status']} {r.get('value', '')} {r.get('error', '')}")
    return 1 if any(r["status"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
