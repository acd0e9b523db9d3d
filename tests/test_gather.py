"""Batch assembly: whole-window block gathers equal per-sample slices; outputs are reused safely."""

from __future__ import annotations

import pytest
import torch

from pgti_core.batching.gather import OutputRing, WindowGather, window_blocks


def _series(t: int = 40, n: int = 5, f: int = 2) -> torch.Tensor:
    return torch.arange(t * n * f, dtype=torch.float32).view(t, n, f)


def _windows(buf: torch.Tensor, rows: list[int], length: int = 24) -> torch.Tensor:
    return torch.stack([buf[r : r + length] for r in rows])


def test_window_gather_equals_slices_and_splits():
    buf, rows = _series(), [0, 7, 3, 16, 7]
    want = _windows(buf, rows)
    gather = WindowGather(buf, 24, 12)
    x, y = gather(torch.tensor(rows))
    assert torch.equal(x, want[:, :12]) and torch.equal(y, want[:, 12:])
    block = gather.block(torch.tensor(rows))
    assert block.is_contiguous() and torch.equal(block, want.flatten(1))
    out = torch.full(gather.block_shape(8), -1.0)
    filled = gather.fill(torch.tensor(rows), out)
    assert filled.data_ptr() == out.data_ptr() and torch.equal(out[5:], torch.full((3, 240), -1.0))
    x2, y2 = gather.split(filled)
    assert torch.equal(x2, x) and torch.equal(y2, y)


def test_window_blocks_is_a_view_and_last_start_fits():
    buf = _series()
    blocks = window_blocks(buf, 24)
    assert blocks.shape == (17, 24 * 10) and blocks.data_ptr() == buf.data_ptr()
    x, y = WindowGather(buf, 24, 12)(torch.tensor([16]))
    assert torch.equal(torch.cat([x[0], y[0]]), buf[16:])
    with pytest.raises(IndexError):
        WindowGather(buf, 24, 12)(torch.tensor([17]))


def test_bad_arguments():
    buf = _series()
    with pytest.raises(ValueError, match="contiguous"):
        window_blocks(buf.transpose(0, 1), 3)
    with pytest.raises(ValueError, match="length"):
        window_blocks(buf, 41)
    with pytest.raises(ValueError, match="lags"):
        WindowGather(buf, 24, 24)


def test_output_ring_reuses_only_released_buffers():
    ring = OutputRing(2)

    def make():
        buf = torch.empty(4)
        return buf, buf[:2]

    a, _ = ring.get(4, make)
    first = a.data_ptr()
    view = a[:2]
    del a
    b, _ = ring.get(4, make)
    assert b.data_ptr() != first  # a view of the first is alive
    del view
    c, _ = ring.get(4, make)
    assert c.data_ptr() == first  # released: reused
    held = c.data_ptr()
    w = torch.randn(4, requires_grad=True)
    loss = (w * c).sum()  # autograd saves c
    del c
    assert ring.get(4, make)[0].data_ptr() not in (held, b.data_ptr())  # saved, and b is held
    loss.backward()
    del loss
    assert ring.get(5, lambda: (torch.empty(5),))[0].shape == (5,)  # another key: a new slot


def _hold(how: str, x: torch.Tensor, y: torch.Tensor):
    """Keep part of a batch the way a consumer might; return a reader of what is kept."""
    if how == "list":
        kept = [x]
        return lambda: kept[0].flatten()
    if how == "tuple":
        kept = (y,)
        return lambda: kept[0].flatten()
    if how == "view":
        kept = x[0]
        return lambda: kept.flatten()
    if how == "numpy":
        kept = y.numpy()
        return lambda: torch.from_numpy(kept).flatten()
    if how == "storage":
        kept = x.untyped_storage()
        return lambda: torch.tensor([]).set_(kept)
    if how == "base":
        kept = x._base
        return lambda: kept.flatten()
    lin = torch.nn.Linear(2, 3, bias=False)  # "autograd": the graph saves x
    out = lin(x)

    def read() -> torch.Tensor:
        out.sum().backward()
        return lin.weight.grad[0]

    return read


@pytest.mark.parametrize("how", ["list", "tuple", "view", "numpy", "storage", "base", "autograd"])
def test_window_gather_never_overwrites_a_held_batch(how):
    buf = _series()
    gather = WindowGather(buf, 24, 12)
    read = _hold(how, *gather(torch.tensor([0, 5])))
    want = _hold(how, *WindowGather(buf.clone(), 24, 12)(torch.tensor([0, 5])))()
    for rows in ([9, 2], [3, 4], [16, 16]):  # more batches than the ring has slots
        x, y = gather(torch.tensor(rows))
        assert torch.equal(torch.cat([x, y], dim=1), _windows(buf, rows))
    assert torch.equal(read(), want)


def test_window_gather_reuses_a_released_slot():
    gather = WindowGather(_series(), 24, 12)
    first = gather(torch.tensor([0, 5]))[0].data_ptr()
    assert gather(torch.tensor([7, 1]))[0].data_ptr() == first  # nothing held: the same memory


def test_window_gather_equals_slices_and_keeps_held_batches():
    buf = _series()
    gather = WindowGather(buf, 24, 12)
    held = [gather(torch.tensor(r)) for r in ([0, 5], [16, 2], [9, 9])]
    for (x, y), r in zip(held, ([0, 5], [16, 2], [9, 9]), strict=True):
        assert torch.equal(torch.cat([x, y], dim=1), _windows(buf, r))
