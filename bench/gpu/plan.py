"""The GPU check's plan: each step's command line, its time budget, and which parser accepts it.

The plan is data, so ``--dry-run`` prints exactly what a run would execute and a CPU test can feed
every command line to the real command's parser (:func:`check_argv`) before any device time is
spent. The budgets add up to the whole check's (:data:`TOTAL_BUDGET_S`): one call of the device
machine, dataset generation included.
"""

from __future__ import annotations

import importlib
import shlex
from dataclasses import dataclass
from pathlib import Path

TOTAL_BUDGET_S = 480
"""The whole check, dataset generation included (8 minutes)."""
SWEEP_DATASETS = "pems-bay,pems"
SWEEP_STRATEGIES = "standard,index,gpu-index"
SWEEP_STEPS = 200
CHECKS_CSV = "checks.csv"
SWEEP_CSV = "sweep.csv"


@dataclass(frozen=True)
class Step:
    """One command of the check.

    Args:
        name: short label (rows, verdict).
        argv: arguments after the Python interpreter (``-m module ...``).
        budget_s: seconds it may take before it is killed and counted failed.
        what: one line saying what it exercises.
        background: starts at once and runs beside the steps after it (dataset generation).
        after: name of a background step this one waits for first.
    """

    name: str
    argv: tuple[str, ...]
    budget_s: int
    what: str
    background: bool = False
    after: str | None = None

    @property
    def module(self) -> str:
        return self.argv[1]

    @property
    def args(self) -> list[str]:
        """The arguments the module's own parser sees."""
        return list(self.argv[2:])

    def command_line(self, python: str = "python") -> str:
        return shlex.join([python, *self.argv])


def build_plan(out: Path, steps: int = SWEEP_STEPS) -> list[Step]:
    """The steps, in order, writing under ``out`` (sweep.csv, checks.csv; the log and report are
    written by the runner)."""
    checks = str(out / CHECKS_CSV)
    return [
        Step(
            "data",
            ("-m", "bench.gpu.prepare", "--datasets", SWEEP_DATASETS),
            260,
            "generate the sweep's datasets into the cache (pems: 9.4 GB), beside the probes",
            background=True,
        ),
        Step(
            "tests",
            (
                "-m",
                "pytest",
                "-q",
                "-m",
                "gpu",
                "-p",
                "no:cacheprovider",
                "--continue-on-collection-errors",
                "tests",
            ),
            75,
            "the gpu-marked tests",
        ),
        Step(
            "memory",
            ("-m", "bench.gpu.memory", "--out", checks),
            30,
            "allocator and NVML device-memory instruments against known allocations and NVML",
        ),
        Step(
            "nccl",
            ("-m", "bench.gpu.nccl", "--worlds", "1,2", "--out", checks),
            45,
            "NCCL process group at world size 1 and 2 ranks sharing the GPU: all-reduce result, time",
        ),
        Step(
            "paths",
            ("-m", "bench.gpu.paths", "--steps", str(steps), "--out", checks),
            75,
            "index +prefetch, gpu-index +reused buffer (bit-identical, ms/step); CUDA-graph step",
        ),
        Step(
            "asv",
            ("-m", "bench.gpu.asv_once", "--out", checks),
            40,
            "the asv benchmarks that touch the device (benchmarks/bench_device.py), once each",
        ),
        Step(
            "sweep",
            (
                "-m",
                "bench.run",
                "--gpus",
                "1",
                "--datasets",
                SWEEP_DATASETS,
                "--strategies",
                SWEEP_STRATEGIES,
                "--models",
                "dcrnn-paper",
                "--epochs",
                "1",
                "--max-steps",
                str(steps),
                "--timeout",
                "150",
                "--out",
                str(out / SWEEP_CSV),
                "--quiet",
            ),
            215,
            "bench.run at P = 1: standard, index, gpu-index on pems-bay and full-size pems",
            after="data",
        ),
    ]


def total_budget(plan: list[Step]) -> int:
    """Seconds the plan may take: background steps start at 0, a step waiting for one starts no
    earlier than its end, and every step uses its whole budget."""
    ends = {s.name: s.budget_s for s in plan if s.background}
    t = 0
    for s in plan:
        if s.background:
            continue
        t = max(t, ends.get(s.after, 0)) + s.budget_s
    return max(t, *ends.values(), 0)


def check_argv(step: Step) -> None:
    """Raise ``SystemExit`` (argparse's usage error) or ``ValueError`` unless ``step``'s real
    command accepts its arguments. pytest's are checked by a collection-only run in-process."""
    if step.argv[0] != "-m":
        raise ValueError(f"{step.name}: expected '-m MODULE ...', got {step.argv!r}")
    if step.module == "pytest":
        import pytest

        code = pytest.main([*step.args, "--collect-only", "-q"])
        if code != 0:
            raise ValueError(f"{step.name}: pytest rejected {step.args} (exit {int(code)})")
        return
    if step.module == "bench.run":
        from bench.sweep.args import parse_args

        parse_args(step.args)
        return
    importlib.import_module(step.module).build_parser().parse_args(step.args)


def print_plan(plan: list[Step], python: str = "python") -> None:
    """The ``--dry-run`` output: one block per step, then the total budget."""
    for i, s in enumerate(plan, 1):
        when = "background" if s.background else (f"after {s.after}" if s.after else "")
        print(f"{i}. {s.name} ({s.budget_s} s{', ' + when if when else ''}): {s.what}")
        print(f"   {s.command_line(python)}")
    print(f"budget: {total_budget(plan)} s of {TOTAL_BUDGET_S} s")
