"""Masked MAE, RMSE and MAPE (DCRNN's metrics, Li et al. 2018) and exact streaming sums of them.

Inputs are de-normalized values of feature 0. A target counts when it is not NaN and
``|target| > null_tol``: missing readings are stored as 0, and de-normalized zeros come back only
approximately 0 in float32. DCRNN re-weights the mask (``mask /= mask.mean()``) so the loss is the
mean over valid entries; ``sum(err * valid) / count`` is the same number, and 0 (not NaN) when
nothing is valid.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NULL_TOL = 1e-4
"""Targets with ``|target| <= NULL_TOL`` are missing readings."""


def valid_mask(target: Tensor, null_tol: float = NULL_TOL) -> Tensor:
    """Boolean mask of the targets that count: not NaN and ``|target| > null_tol``."""
    return (target.abs() > null_tol) & ~torch.isnan(target)


def _errors(pred: Tensor, target: Tensor, null_tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(|err| with invalid entries 0, clean target, valid)``; no NaN reaches the gradient."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred: shape {tuple(pred.shape)} differs from target {tuple(target.shape)}"
        )
    valid = valid_mask(target, null_tol)
    clean = torch.where(valid, target, torch.ones_like(target))
    abs_err = torch.where(valid, (pred - clean).abs(), torch.zeros_like(pred))
    return abs_err, clean, valid


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    return values.sum() / valid.sum().clamp_min(1)


def masked_mae(pred: Tensor, target: Tensor, null_tol: float = NULL_TOL) -> Tensor:
    """Mean absolute error over valid targets (0 when none is valid); differentiable.

    Args:
        pred (Tensor): predictions, any shape.
        target (Tensor): targets, same shape; missing entries are ~0 or NaN.
        null_tol (float, default ``NULL_TOL``): targets with ``|target| <= null_tol`` are missing.
    """
    abs_err, _, valid = _errors(pred, target, null_tol)
    return _masked_mean(abs_err, valid)


def masked_rmse(pred: Tensor, target: Tensor, null_tol: float = NULL_TOL) -> Tensor:
    """Root mean squared error over valid targets (0 when none is valid). Args as :func:`masked_mae`."""
    abs_err, _, valid = _errors(pred, target, null_tol)
    return _masked_mean(abs_err * abs_err, valid).sqrt()


def masked_mape(pred: Tensor, target: Tensor, null_tol: float = NULL_TOL) -> Tensor:
    """Mean absolute percentage error over valid targets, as a fraction (0.05 = 5%), DCRNN's unit;
    0 when none is valid. Args as :func:`masked_mae`."""
    abs_err, clean, valid = _errors(pred, target, null_tol)
    return _masked_mean(abs_err / clean.abs(), valid)


class MetricSums:
    """Running sums of absolute, squared and absolute-percentage errors and the valid count.

    Sums add across batches and ranks (:meth:`merge`, or all-reduce :meth:`to_tensor`), so
    metrics over sharded data weighted by counts are exact. Sums are float64 and stay on the
    device until read (no synchronisation per batch).

    Args:
        totals (Tensor | None): ``[abs_err, sq_err, abs_pct_err, count]`` (default zeros).
    """

    def __init__(self, totals: Tensor | None = None) -> None:
        self.totals = torch.zeros(4, dtype=torch.float64) if totals is None else totals.double()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor, null_tol: float = NULL_TOL) -> MetricSums:
        """Add a batch of de-normalized predictions and targets; returns ``self``."""
        abs_err, clean, valid = _errors(pred.double(), target.double(), null_tol)
        batch = torch.stack(
            [abs_err.sum(), (abs_err * abs_err).sum(), (abs_err / clean.abs()).sum(), valid.sum()]
        )
        self.totals = self.totals.to(batch.device) + batch
        return self

    def merge(self, other: MetricSums) -> MetricSums:
        """Sums of both (e.g. two shards), as a new object."""
        return MetricSums(self.totals.cpu() + other.totals.cpu())

    def to_tensor(self) -> Tensor:
        """The four sums as a float64 tensor, for ``all_reduce``."""
        return self.totals.clone()

    @classmethod
    def from_tensor(cls, totals: Tensor) -> MetricSums:
        """Rebuild from :meth:`to_tensor`'s layout (e.g. after an all-reduce)."""
        if totals.shape != (4,):
            raise ValueError(f"totals: expected shape [4], got {tuple(totals.shape)}")
        return cls(totals)

    def _read(self) -> list[float]:
        return self.totals.tolist()

    @property
    def count(self) -> int:
        return int(self._read()[3])

    @property
    def mae(self) -> float:
        s = self._read()
        return s[0] / s[3] if s[3] else 0.0

    @property
    def rmse(self) -> float:
        s = self._read()
        return math.sqrt(s[1] / s[3]) if s[3] else 0.0

    @property
    def mape(self) -> float:
        """As a fraction (0.05 = 5%)."""
        s = self._read()
        return s[2] / s[3] if s[3] else 0.0
