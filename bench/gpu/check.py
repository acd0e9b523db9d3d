"""The GPU check's runner: every step of :mod:`bench.gpu.plan` in its own process, within budget.

Each step's output goes to ``log.txt``; its exit status, seconds and budget become a ``step`` row
of ``checks.csv`` beside the probes' own rows. A step that runs past its budget is killed with its
process group and counted failed. At the end the report (``summary.md``, ``gpu_check.png``) is
written, a short verdict printed, and the exit status is 1 if any CUDA path failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.cli import positive_int
from bench.gpu import report
from bench.gpu.plan import CHECKS_CSV, SWEEP_CSV, TOTAL_BUDGET_S, Step, build_plan, print_plan
from bench.gpu.rows import append_rows, device_label, row

LOG = "log.txt"
REPORT_RESERVE_S = 15
"""Seconds kept back from the last step for the report."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_check",
        description="Run every CUDA path of pgti once on this machine's GPU (about 8 minutes) "
        "and write CSVs, a plot and a summary under --out.",
    )
    p.add_argument("--out", type=Path, default=Path("results/gpu"), help="output folder")
    p.add_argument("--steps", type=positive_int, default=200, help="training steps per point")
    p.add_argument("--budget", type=positive_int, default=TOTAL_BUDGET_S, help="seconds in all")
    p.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    p.add_argument("--force", action="store_true", help="replace a previous check's files in --out")
    return p


def _outputs(out: Path) -> list[Path]:
    return [
        *(out / n for n in (CHECKS_CSV, SWEEP_CSV, LOG, report.SUMMARY, report.FIGURE)),
        *out.glob(f"{Path(SWEEP_CSV).stem}.*.system.json"),
    ]


class _Running:
    """A step started in its own process group, its output in ``sink``."""

    started: list[_Running] = []  # every step started, so none outlives an interrupted check

    def __init__(self, step: Step, sink) -> None:
        self.step, self.sink, self.t0 = step, sink, time.monotonic()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, *step.argv], stdout=sink, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        _Running.started.append(self)

    def kill(self) -> None:
        """End the step's whole process group if it is still running."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def finish(self, timeout_s: float) -> dict:
        """Wait up to ``timeout_s``; kill the group if it is still running. The step's row."""
        error = ""
        try:
            code = self.proc.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            self.kill()
            code, error = None, f"killed after its budget ({timeout_s:.0f} s)"
        seconds = time.monotonic() - self.t0
        if code not in (None, 0):
            error = f"exit status {code}"
        status = "ok" if code == 0 else "failed"
        return row("step", self.step.name, status, device=device_label(), value=round(seconds, 1),
                   unit="s", reference=self.step.budget_s, error=error)  # fmt: skip


def run_plan(plan: list[Step], out: Path, budget_s: float) -> list[dict]:
    """Run the steps; background steps beside the others. The ``step`` rows, in plan order."""
    deadline = time.monotonic() + budget_s
    rows: dict[str, dict] = {}
    with (out / LOG).open("w") as log:
        background: dict[str, tuple[_Running, object]] = {}
        for step in plan:
            if step.background:
                sink = tempfile.TemporaryFile("w+")
                background[step.name] = (_Running(step, sink), sink)
                print(f"[{step.name}] started in the background", flush=True)
        for step in plan:
            if step.background:
                continue
            if step.after in background:
                rows[step.after] = _drain(background.pop(step.after), log, deadline)
                if rows[step.after]["status"] != "ok":
                    rows[step.name] = row("step", step.name, "skipped", device=device_label(),
                                          error=f"{step.after} failed")  # fmt: skip
                    continue
            left = deadline - time.monotonic() - REPORT_RESERVE_S
            if left <= 0:
                rows[step.name] = row("step", step.name, "failed", device=device_label(),
                                      error="not run: the check's budget was spent")  # fmt: skip
                _say(rows[step.name])
                continue
            log.write(f"===== {step.name}: {step.command_line()}\n")
            log.flush()
            rows[step.name] = _Running(step, log).finish(min(step.budget_s, left))
            _say(rows[step.name])
        for name, running in background.items():
            rows[name] = _drain(running, log, deadline)
    return [rows[s.name] for s in plan]


def _drain(running: tuple[_Running, object], log, deadline: float) -> dict:
    """Wait for a background step, then copy its output into the log."""
    proc, sink = running
    result = proc.finish(
        min(proc.step.budget_s - (time.monotonic() - proc.t0), deadline - time.monotonic())
    )
    sink.seek(0)
    log.write(f"===== {proc.step.name} (background): {proc.step.command_line()}\n{sink.read()}")
    log.flush()
    sink.close()
    _say(result)
    return result


def _say(r: dict) -> None:
    print(
        f"[{r['case']}] {r['status']} in {r.get('value', '-')} s {r.get('error', '')}", flush=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    plan = build_plan(args.out, args.steps)
    if args.dry_run:
        print_plan(plan)
        return 0
    if not torch.cuda.is_available():
        print(
            "bench.gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing "
            "was run. Run it on a machine with a GPU, or see the plan with --dry-run.",
            file=sys.stderr,
        )
        return 1
    existing = [p for p in _outputs(args.out) if p.exists()]
    if existing and not args.force:
        parser.error(f"--out: {args.out} already holds a check's results; pass --force to replace")
    for p in existing:
        p.unlink()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"GPU check on {device_label()}: {len(plan)} steps, {args.budget} s budget", flush=True)
    try:
        steps = run_plan(plan, args.out, args.budget)
    finally:
        for running in _Running.started:
            running.kill()
    append_rows(args.out / CHECKS_CSV, steps)
    verdict = report.write(args.out)
    print(verdict.text)
    return 0 if verdict.passed else 1
