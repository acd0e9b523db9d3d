"""Batch assembly: whole-window block gathers equal per-sample slices; outputs are reused safely."""

from __future__ import annotations

import pytest
import torch

from pgti_core.batching.gather import (
    OutputRing,
    WindowGather,
    split_window,
    window_blocks,
)


def _series(t: int = 40, n: int = 5, f: int = 2) -> torch.Tensor:
    return torch.arange(t * n * f, dtype=torch.float32).view(t, n, f)


def test_window_gather_equals_slices_and_splits():
    buf, rows = _series(), torch.tensor([0, 7, 3, 16, 7])
    want = torch.stack([buf[r : r + 24] for r in rows.tolist()])
    got = WindowGather(buf, 24)(rows)
    assert torch.equal(got, want)
    x, y = split_window(got, 12)
    assert torch.equal(x, want[:, :12]) and torch.equal(y, want[:, 12:])


def test_window_blocks_is_a_view_and_last_start_fits():
    buf = _series()
    blocks = window_blocks(buf, 24)
    assert blocks.shape == (17, 24 * 10) and blocks.data_ptr() == buf.data_ptr()
    assert torch.equal(WindowGather(buf, 24)(torch.tensor([16]))[0], buf[16:])
    with pytest.raises(IndexError):
        WindowGather(buf, 24)(torch.tensor([17]))


def test_bad_arguments():
    buf = _series()
    with pytest.raises(ValueError, match="contiguous"):
        window_blocks(buf.transpose(0, 1), 3)
    with pytest.raises(ValueError, match="length"):
        window_blocks(buf, 41)


def test_output_ring_reuses_only_released_buffers():
    ring, like = OutputRing(2), torch.empty(1)
    a = ring.get((4,), like)
    first = a.data_ptr()
    view = a[:2]
    del a
    b = ring.get((4,), like)
    assert b.data_ptr() != first  # a view of the first is alive
    del view
    c = ring.get((4,), like)
    assert c.data_ptr() == first  # released: reused
    held = c.data_ptr()
    w = torch.randn(4, requires_grad=True)
    loss = (w * c).sum()  # autograd saves c
    del c
    assert ring.get((4,), like).data_ptr() not in (held, b.data_ptr())  # saved, and b is held
    loss.backward()
    del loss
    assert ring.get((5,), like).shape == (5,)  # another shape: a new buffer


def test_window_gather_equals_slices_and_keeps_held_batches():
    buf = _series()
    gather = WindowGather(buf, 24)
    held = [gather(torch.tensor(r)) for r in ([0, 5], [16, 2], [9, 9])]
    for got, r in zip(held, ([0, 5], [16, 2], [9, 9]), strict=True):
        assert torch.equal(got, torch.stack([buf[i : i + 24] for i in r]))
