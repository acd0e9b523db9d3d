"""The hand-written T-GCN step equals autograd over the same operations, and the graph operator's
autograd-free product equals its dense matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgti_core.models import GraphOperator, TGCNCell, channel_mix, gcn_matrix
from pgti_core.models.tgcn_step import tgcn_step

F, H, N, B = 2, 5, 7, 3
THRESHOLDS = pytest.mark.parametrize("threshold", [0.0, 1.1], ids=["dense", "csr"])


def graph_op(threshold: float) -> GraphOperator:
    rng = np.random.default_rng(0)
    ei = np.array([[i, j] for i in range(N) for j in range(N) if i != j and rng.random() < 0.4]).T
    return GraphOperator(gcn_matrix(ei, rng.random(ei.shape[1]) + 0.1, N), threshold).double()


def rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()


def autograd_step(x, h, cell: TGCNCell, graph: GraphOperator) -> torch.Tensor:
    """The step written as plain autograd operations (sigmoid, tanh, no fused Function)."""
    gates = channel_mix(graph(torch.cat([x, h])), cell.gates.weight.t(), cell.gates.bias)
    r, u = torch.sigmoid(gates).chunk(2)
    z = channel_mix(graph(torch.cat([x, r * h])), cell.candidate.weight.t(), cell.candidate.bias)
    return u * h + (1 - u) * torch.tanh(z)


@THRESHOLDS
def test_tgcn_step_passes_gradcheck(threshold):
    graph = graph_op(threshold)
    ax, h = rand(F, N, B, seed=0), rand(H, N, B, seed=1)
    wg, bg = rand(2 * H, F + H, seed=2), rand(2 * H, seed=3)
    wc, bc = rand(H, F + H, seed=4), rand(H, seed=5)
    assert torch.autograd.gradcheck(
        lambda *a: tgcn_step(a[0], a[1], a[2:4], a[4:6], graph), (ax, h, wg, bg, wc, bc)
    )


@THRESHOLDS
@pytest.mark.parametrize("x_grad", [False, True], ids=["x-const", "x-grad"])
def test_tgcn_step_equals_autograd(threshold, x_grad):
    """Forward and every gradient, with an input that needs no gradient (the models' case: the
    backward then skips the input's rows) and one that does."""
    graph, cell = graph_op(threshold), TGCNCell(F, H).double()
    x, h = rand(F, N, B, seed=6).requires_grad_(x_grad), rand(H, N, B, seed=7, scale=2)
    weight = torch.randn(H, N, B, dtype=torch.float64)
    leaves = [h, *cell.parameters()] + ([x] if x_grad else [])
    results = []
    for fn in (cell.step, lambda x, h, g: autograd_step(x, h, cell, g)):
        out = fn(x, h, graph)
        results.append((out, torch.autograd.grad((out * weight).sum(), leaves)))
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w)


@THRESHOLDS
@pytest.mark.parametrize("transpose", [False, True])
def test_graph_product_is_the_dense_matrix(threshold, transpose):
    graph = graph_op(threshold)
    dense = graph.to_dense()
    mat = dense.t() if transpose else dense
    x = torch.randn(4, N, B, dtype=torch.float64)
    out = torch.full_like(x, float("nan"))  # overwritten, not added to
    torch.testing.assert_close(graph.product(x, out, transpose=transpose), mat @ x)
    acc = torch.ones_like(x)
    graph.product(x, acc, transpose=transpose, accumulate=True)
    torch.testing.assert_close(acc, 1 + mat @ x)


def test_graph_product_refuses_stacks_and_mismatched_outputs():
    graph = graph_op(1.1)
    with pytest.raises(ValueError, match="one-matrix"):
        graph.product(torch.zeros(2, N, B, dtype=torch.float64), torch.zeros(3, N, B))
    stack = torch.cat([graph.to_dense(), graph.to_dense()]).to_sparse()
    with pytest.raises(ValueError, match="one-matrix"):
        GraphOperator(stack).product(torch.zeros(2, N, B), torch.zeros(2, N, B))
    with pytest.raises(ValueError, match="contiguous"):
        graph.product(torch.zeros(2, N, B), torch.zeros(B, N, 2).transpose(0, 2))


def test_graph_product_runs_in_chunks_over_many_slices(monkeypatch):
    """A CSR product whose block-diagonal matrix would exceed the entry budget goes in slices."""
    graph = graph_op(1.1)
    monkeypatch.setattr("pgti_core.models.propagation.MAX_BLOCK_ENTRIES", graph.values.numel() * 2)
    x = torch.randn(5, N, B, dtype=torch.float64)  # slices of 2, 2 and 1
    out = graph.product(x, torch.full_like(x, float("nan")), transpose=True)
    torch.testing.assert_close(out, graph.to_dense().t() @ x)
    assert set(graph._products) == {2, 1}


@THRESHOLDS
def test_tgcn_step_takes_a_non_contiguous_state(threshold):
    """A state that is a view with other strides gives the same output and gradient."""
    graph, cell = graph_op(threshold), TGCNCell(F, H).double()
    x = rand(F, N, B, seed=8).detach()
    h = rand(B, N, H, seed=9).detach().permute(2, 1, 0).requires_grad_()
    assert not h.is_contiguous()
    results = []
    for state in (h, h.contiguous()):
        out = cell.step(x, state, graph)
        results.append((out, torch.autograd.grad(out.square().sum(), h)[0]))
    torch.testing.assert_close(results[0], results[1])
