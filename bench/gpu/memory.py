"""``python -m bench.gpu.memory``: the device-memory instruments against known allocations and NVML.

:class:`~pgti_core.instruments.device.DeviceMemoryMonitor` reports, per phase, the caching
allocator's peaks and NVML's used memory of its own device. Here each phase allocates a known
number of bytes; the monitor's allocated peak must cover them exactly (to the allocator's 2 MiB
rounding), reserved must cover allocated, and its NVML figure must agree with NVML read directly
(an independent handle, by device index) and with the bytes allocated, within the CUDA context's
and allocator's slack.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.cli import int_list
from bench.gpu.rows import append_rows, device_label, first_line, row

SIZES_MIB = (256, 1024, 4096)
ROUNDING = 2 << 20  # the caching allocator rounds large blocks to 2 MiB
NVML_SLACK = 64 << 20  # other processes' and the context's drift between two reads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.memory", description=__doc__)
    p.add_argument("--out", required=True, help="checks CSV to append rows to")
    p.add_argument(
        "--sizes-mib", type=int_list, default=list(SIZES_MIB), help="bytes per phase, in MiB"
    )
    return p


def _direct_nvml_used() -> int | None:
    """NVML used bytes of GPU 0 by index: independent of the monitor's UUID lookup."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML: the rows say so
        return None
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)
    finally:
        pynvml.nvmlShutdown()


def _within(value: int | None, ref: int, low: int, high: int) -> str:
    return "ok" if value is not None and ref - low <= value <= ref + high else "failed"


def measure(sizes_mib: list[int]) -> list[dict]:
    """One phase per size; rows compare the monitor's figures with the bytes and NVML."""
    from pgti_core.instruments.device import DeviceMemoryMonitor

    dev = device_label()
    monitor = DeviceMemoryMonitor(0)
    monitor.start()
    direct = {}
    base_direct = _direct_nvml_used()
    for mib in sizes_mib:
        phase = f"alloc{mib}"
        monitor.set_phase(phase)
        block = torch.ones(mib << 20 >> 2, device="cuda:0")  # float32: mib MiB exactly
        torch.cuda.synchronize()
        monitor.poll()
        used = _direct_nvml_used()
        direct[phase] = None if used is None or base_direct is None else used - base_direct
        del block
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    monitor.set_phase(None)
    report = monitor.stop()
    rows = []
    for mib in sizes_mib:
        phase, nbytes = f"alloc{mib}", mib << 20
        alloc = report.above_baseline("allocated", phase)
        reserved = report.above_baseline("reserved", phase)
        nvml = report.above_baseline("nvml", phase)
        checks = [
            ("allocated", alloc, nbytes, _within(alloc, nbytes, 0, ROUNDING)),
            (
                "reserved",
                reserved,
                alloc or nbytes,
                _within(reserved, alloc or nbytes, 0, ROUNDING),
            ),
            ("nvml-vs-bytes", nvml, nbytes, _within(nvml, nbytes, 0, NVML_SLACK)),
            ("nvml-vs-direct", nvml, direct[phase], "failed"),
        ]
        if direct[phase] is not None:
            d = direct[phase]
            checks[-1] = ("nvml-vs-direct", nvml, d, _within(nvml, d, NVML_SLACK, NVML_SLACK))
        for case, value, ref, status in checks:
            if value is None:  # NVML missing: say so rather than fail the instruments
                status = "skipped"
            rows.append(
                row("memory", f"{mib}MiB {case}", status, device=dev, value=value, unit="B",
                    reference=ref, error="" if value is not None else report.reason or "no NVML")
            )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.gpu.memory: no CUDA device; nothing measured", file=sys.stderr)
        return 1
    try:
        rows = measure(args.sizes_mib)
    except Exception as e:  # noqa: BLE001 - a CUDA failure is a result of the check
        rows = [row("memory", "monitor", "failed", device=device_label(), error=first_line(e))]
    append_rows(args.out, rows)
    failed = [r for r in rows if r["status"] == "failed"]
    for r in rows:
        print(f"memory {r['case']}: {r['status']} {r.get('value', '')} vs {r.get('reference', '')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
