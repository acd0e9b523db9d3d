"""``python -m bench.gpu.paths``: the device paths, checked bit for bit and timed per training step.

On a random series of PeMS-Bay's shape (325 nodes, batch 64, 12/12 windows), dcrnn-paper:

- ``identity``: the first batches of ``index`` with prefetch (pinned staging, side stream),
  ``gpu-index`` and ``gpu-index`` with its reused buffer, each equal (``torch.equal``) to the
  same batches of ``index`` gathered on the host;
- ``step``: ms per training step (data included) for ``index``, ``index`` +prefetch,
  ``gpu-index`` and ``gpu-index`` +reuse, after a warm-up, losses kept on the device;
- ``graph``: the step captured as a CUDA graph (else ``torch.compile(mode="reduce-overhead")``)
  against eager from the same initial weights on the same batches: ms per step and the largest
  relative loss difference.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from bench.cli import positive_int
from bench.gpu.graph_step import TrainStep
from bench.gpu.rows import append_rows, device_label, first_line, row
from benchmarks.common import model_for, normalizer_of, random_series, strategy_on
from pgti_core.batching import Strategy
from pgti_core.instruments.timing import device_sync

PATHS: dict[str, tuple[str, dict]] = {
    "index": ("index", {}),
    "index+prefetch": ("index", {"prefetch": True}),
    "gpu-index": ("gpu-index", {}),
    "gpu-index+reuse": ("gpu-index", {"reuse_buffer": True}),
}
WARMUP_STEPS = 10
IDENTITY_BATCHES = 8
LOSS_RTOL = 1e-4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu.paths", description=__doc__)
    p.add_argument("--steps", type=positive_int, default=200, help="timed steps per path")
    p.add_argument("--nodes", type=positive_int, default=325, help="graph size (PeMS-Bay's)")
    p.add_argument("--time-steps", type=positive_int, default=52116, help="series length")
    p.add_argument("--out", required=True, help="checks CSV to append rows to")
    return p


def identity_rows(strategies: dict[str, Strategy], reference: Strategy, dev: str) -> list[dict]:
    """Each path's first batches against the host-gathered ``reference``, element for element."""
    plan = reference.plan()[:IDENTITY_BATCHES]
    rows = []
    for name, strategy in strategies.items():
        same = True
        for starts, (x, y) in strategy.batches(plan):
            xr, yr = reference.batch(starts)
            same &= torch.equal(x.cpu(), xr) and torch.equal(y.cpu(), yr)  # before any reuse
        rows.append(row("paths", f"identity {name}", "ok" if same else "failed", device=dev,
                        value=int(same), unit="bit-identical", reference=1))  # fmt: skip
    return rows


def time_steps(strategy: Strategy, step: Callable, plan: list[np.ndarray]) -> tuple[float, list]:
    """Seconds per step over ``plan`` after :data:`WARMUP_STEPS`, and the steps' losses."""
    sync = device_sync(strategy.device)
    losses = [step(x, y) for _, (x, y) in strategy.batches(plan[:WARMUP_STEPS])]
    sync()
    t0 = time.perf_counter()
    losses += [step(x, y) for _, (x, y) in strategy.batches(plan[WARMUP_STEPS:])]
    sync()
    return (time.perf_counter() - t0) / max(1, len(plan) - WARMUP_STEPS), losses


def _train_step(series, strategy: Strategy, mode: str, state: dict | None = None) -> TrainStep:
    model = model_for("dcrnn-paper", series).to(strategy.device)
    if state is not None:
        model.load_state_dict(state)
    x, y = strategy.batch(strategy.plan()[0])
    return TrainStep(model, strategy.normalizer, x.shape, y.shape, strategy.device, mode=mode)


def step_rows(series, strategies: dict[str, Strategy], steps: int, dev: str) -> list[dict]:
    """ms per training step of each path, data included."""
    rows = []
    for name, strategy in strategies.items():
        plan = [s for s in strategy.plan() if len(s) == strategy.batch_size][: steps + WARMUP_STEPS]
        sec, _ = time_steps(strategy, _train_step(series, strategy, "eager"), plan)
        base = name.split("+")[0]
        rows.append(row("paths", f"step {name}", "ok", device=dev, value=sec * 1e3, unit="ms/step",
                        reference=base if base != name else ""))  # fmt: skip
    return rows


def graph_rows(series, strategy: Strategy, steps: int, dev: str) -> list[dict]:
    """Eager against captured steps (graph, else compile) from the same weights and batches."""
    plan = [s for s in strategy.plan() if len(s) == strategy.batch_size][: steps + WARMUP_STEPS]
    state = copy.deepcopy(model_for("dcrnn-paper", series).state_dict())
    eager_s, eager_losses = time_steps(
        strategy, _train_step(series, strategy, "eager", state), plan
    )
    eager = torch.stack(eager_losses).cpu()
    rows = [row("graph", "eager", "ok", device=dev, value=eager_s * 1e3, unit="ms/step")]
    for mode in ("graph", "compile"):
        try:
            sec, losses = time_steps(strategy, _train_step(series, strategy, mode, state), plan)
            got = torch.stack(losses).cpu()
        except Exception as e:  # noqa: BLE001 - a capture failure is a result; try the next mode
            rows.append(row("graph", mode, "failed", device=dev, error=first_line(e)))
            continue
        rel = float(((got - eager).abs() / eager.abs().clamp_min(1e-12)).max())
        status = "ok" if rel <= LOSS_RTOL else "failed"
        rows.append(row("graph", mode, status, device=dev, value=sec * 1e3, unit="ms/step",
                        reference=eager_s * 1e3))  # fmt: skip
        rows.append(row("graph", f"{mode} loss max rel diff", status, device=dev, value=rel,
                        unit="relative", reference=LOSS_RTOL))  # fmt: skip
        if status == "ok":
            break
    return rows


def measure(args: argparse.Namespace, device: torch.device | str = "cuda:0") -> list[dict]:
    """All rows; on a CPU device the same code runs (the captured modes then fail: CUDA only)."""
    device = torch.device(device)
    dev = device_label(device)
    series = random_series(args.time_steps, args.nodes, profile="pems-bay")
    norm = normalizer_of(series)
    reference = strategy_on(series, "index", normalizer=norm)
    strategies = {
        name: strategy_on(series, kind, normalizer=norm, device=device, **extra)
        for name, (kind, extra) in PATHS.items()
    }
    rows = identity_rows({k: v for k, v in strategies.items() if k != "index"}, reference, dev)
    rows += step_rows(series, strategies, args.steps, dev)
    rows += graph_rows(series, strategies["gpu-index"], args.steps, dev)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.gpu.paths: no CUDA device; nothing measured", file=sys.stderr)
        return 1
    try:
        rows = measure(args)
    except Exception as e:  # noqa: BLE001 - a CUDA failure is a result of the check
        rows = [row("paths", "setup", "failed", device=device_label(), error=first_line(e))]
    append_rows(args.out, rows)
    for r in rows:
        print(f"{r['check']} {r['case']}: {r['status']} {r.get('value', '')} {r.get('error', '')}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
