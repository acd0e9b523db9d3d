"""Masked MAE/RMSE/MAPE against hand-computed values, and exact streaming sums."""

from __future__ import annotations

import math

import pytest
import torch

from pgti_core.train.metrics import MetricSums, masked_mae, masked_mape, masked_rmse, valid_mask

NAN = float("nan")
# Valid targets: 2 (err 1) and 5 (err 2); 0, 5e-5 (below null_tol) and NaN are missing.
PRED = torch.tensor([1.0, 2.0, 3.0, 4.0, 7.0])
TARGET = torch.tensor([2.0, 0.0, 5.0, NAN, 5e-5])


def test_hand_computed_values():
    assert masked_mae(PRED, TARGET).item() == pytest.approx(1.5)
    assert masked_rmse(PRED, TARGET).item() == pytest.approx(math.sqrt(2.5))
    assert masked_mape(PRED, TARGET).item() == pytest.approx((1 / 2 + 2 / 5) / 2)


def test_null_tolerance():
    assert valid_mask(torch.tensor([0.0, 5e-5, 2e-4, -3.0, NAN])).tolist() == [
        False,
        False,
        True,
        True,
        False,
    ]
    assert valid_mask(torch.tensor([5e-5]), null_tol=1e-5).tolist() == [True]


def test_equals_dcrnn_reweighted_mask():
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(4, 12, 9, generator=gen) * 10
    target[torch.rand(target.shape, generator=gen) < 0.2] = 0.0
    pred = torch.randn(4, 12, 9, generator=gen) * 10
    mask = (target != 0).float()
    mask /= mask.mean()
    dcrnn = ((pred - target).abs() * mask).mean()
    torch.testing.assert_close(masked_mae(pred, target), dcrnn)


def test_all_masked_is_zero_with_finite_gradient():
    pred = torch.tensor([1.0, 2.0], requires_grad=True)
    target = torch.tensor([0.0, NAN])
    for fn in (masked_mae, masked_rmse, masked_mape):
        loss = fn(pred, target)
        assert loss.item() == 0.0
    masked_mae(pred, target).backward()
    assert torch.equal(pred.grad, torch.zeros(2))


def test_nan_targets_do_not_poison_the_gradient():
    pred = PRED.clone().requires_grad_()
    masked_mae(pred, TARGET).backward()
    assert torch.equal(pred.grad, torch.tensor([-0.5, 0.0, -0.5, 0.0, 0.0]))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="pred"):
        masked_mae(torch.zeros(3), torch.zeros(4))


def test_metric_sums_hand_values_and_empty():
    sums = MetricSums().update(PRED, TARGET)
    assert sums.count == 2
    assert sums.mae == pytest.approx(1.5)
    assert sums.rmse == pytest.approx(math.sqrt(2.5))
    assert sums.mape == pytest.approx(0.45)
    empty = MetricSums()
    assert (empty.mae, empty.rmse, empty.mape, empty.count) == (0.0, 0.0, 0.0, 0)


def test_metric_sums_over_shards_equal_the_whole():
    gen = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 50, generator=gen) * 30
    target[::7] = 0.0
    whole = MetricSums().update(pred, target)
    a = MetricSums().update(pred[:13], target[:13])
    b = MetricSums().update(pred[13:31], target[13:31]).update(pred[31:], target[31:])
    merged = a.merge(b)
    reduced = MetricSums.from_tensor(a.to_tensor() + b.to_tensor())  # what all_reduce(SUM) gives
    for total in (merged, reduced):
        assert total.count == whole.count
        for metric in ("mae", "rmse", "mape"):
            assert getattr(total, metric) == pytest.approx(getattr(whole, metric), rel=1e-12)
    # The streaming sums agree with the differentiable loss on the same data.
    assert whole.mae == pytest.approx(masked_mae(pred, target).item(), rel=1e-6)


def test_from_tensor_checks_shape():
    with pytest.raises(ValueError, match="totals"):
        MetricSums.from_tensor(torch.zeros(3))
