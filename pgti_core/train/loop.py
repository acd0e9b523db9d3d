"""The training loop: epochs over any strategy, DDP-aware, with per-phase and per-step timing.

One loop serves every strategy unchanged: it asks the strategy for this epoch's batches of start
indices, gathers each batch, and times the data wait, forward+backward (where DDP's all-reduce
runs) and the optimizer step separately. Validation is reduced across ranks weighted by counts.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from pgti_core.batching.base import Strategy
from pgti_core.data.normalize import Normalizer
from pgti_core.instruments.timing import StepTimes, device_sync
from pgti_core.train.metrics import MetricSums, masked_mae

PhaseHook = Callable[[str], AbstractContextManager]


@dataclass
class EpochRecord:
    """One epoch: per-step losses and batch sizes, wall time, and the validation metrics after it."""

    epoch: int
    wall_s: float = 0.0
    val_s: float = 0.0
    losses: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    val: dict[str, float] = field(default_factory=dict)

    @property
    def train_loss(self) -> float:
        """Sample-weighted mean training loss (masked MAE) over the epoch."""
        return float(np.average(self.losses, weights=self.samples)) if self.losses else float("nan")


@dataclass
class TrainResult:
    """What a run of :func:`fit` measured on this rank."""

    epochs: list[EpochRecord]
    best_val: dict[str, float]
    test: dict[str, float]
    train_s: float
    times: StepTimes


def _reduce(sums: MetricSums, reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> MetricSums:
    if reduce is None:
        return sums
    return MetricSums.from_tensor(reduce(sums.to_tensor()))


def evaluate(
    model: torch.nn.Module,
    strategy: Strategy,
    normalizer: Normalizer,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_steps: int | None = None,
) -> dict[str, float]:
    """Masked MAE/RMSE/MAPE of ``model`` over the strategy's split (its first ``max_steps``
    batches if given), summed across ranks."""
    sums = MetricSums()
    model.eval()
    with torch.no_grad():
        for starts in strategy.plan()[:max_steps]:
            x, y = strategy.batch(starts)
            pred = normalizer.inverse(model(x)[..., 0])
            sums.update(pred, normalizer.inverse(y[..., 0]))
    model.train()
    total = _reduce(sums, reduce)
    return {"mae": total.mae, "rmse": total.rmse, "mape": total.mape, "count": total.count}


def fit(
    model: torch.nn.Module,
    train: Strategy,
    val: Strategy,
    normalizer: Normalizer,
    *,
    epochs: int,
    lr: float = 1e-3,
    test: Strategy | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_steps: int | None = None,
    max_eval_steps: int | None = None,
    phase: PhaseHook | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train ``model`` (already DDP-wrapped when world size > 1) with Adam for ``epochs`` epochs.

    Args:
        model: the network; its output channel 0 is compared with target feature 0.
        train: training strategy (shuffled); ``val``/``test``: evaluation strategies.
        normalizer: de-normalizes channel 0 for the masked MAE loss (DCRNN's convention).
        epochs: number of epochs (>= 1).
        lr: Adam learning rate (default 1e-3, the paper's).
        reduce: sums a tensor across ranks (``None`` at world size 1).
        max_steps: cap on training steps per epoch (benchmarks; default: the whole epoch).
        max_eval_steps: cap on validation and test batches (benchmarks of large series;
            default: the whole split).
        phase: context-manager factory marking ``"train"``/``"val"`` phases for instruments.
        on_epoch: called after each epoch (progress display).
    """
    if epochs < 1:
        raise ValueError(f"epochs: must be >= 1, got {epochs}")
    phase = phase or (lambda _name: nullcontext())
    times = StepTimes(sync=device_sync(train.device))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    records: list[EpochRecord] = []
    best: dict[str, float] = {"mae": float("inf")}
    best_state = copy.deepcopy(model.state_dict())
    t_start = time.perf_counter()
    for epoch in range(epochs):
        train.set_epoch(epoch)
        plan = train.plan()[:max_steps] if max_steps else train.plan()
        rec = EpochRecord(epoch=epoch)
        with phase("train"):
            times.start_epoch()
            for starts in plan:
                x, y = train.batch(starts)
                times.lap("data")
                pred = model(x)[..., 0]
                loss = masked_mae(normalizer.inverse(pred), normalizer.inverse(y[..., 0]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                times.lap("compute")
                optimizer.step()
                times.end_step(len(starts))
                rec.losses.append(loss.item())
                rec.samples.append(len(starts))
            rec.wall_s = times.end_epoch()
        t_val = time.perf_counter()
        with phase("val"):
            rec.val = evaluate(model, val, normalizer, reduce, max_eval_steps)
        rec.val_s = time.perf_counter() - t_val
        if rec.val["mae"] < best["mae"]:
            best = dict(rec.val, epoch=epoch)
            best_state = copy.deepcopy(model.state_dict())
        records.append(rec)
        if on_epoch:
            on_epoch(rec)
    train_s = time.perf_counter() - t_start
    test_metrics: dict[str, float] = {}
    if test is not None:
        model.load_state_dict(best_state)
        with phase("test"):
            test_metrics = evaluate(model, test, normalizer, reduce, max_eval_steps)
    return TrainResult(records, best, test_metrics, train_s, times)
