"""Diffusion convolution: supports, the Chebyshev-like recursion, the CSR/dense operator, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_models import dense_adjacency, dense_supports, diffusion_conv

from pgti_core.models import (
    DiffusionConv,
    GraphOperator,
    diffusion_operator,
    diffusion_polynomials,
    dual_random_walk_supports,
)

N = 7


@pytest.fixture
def graph() -> tuple[np.ndarray, np.ndarray]:
    """A random directed graph on N nodes; node N-1 has no out-edges, and one edge is repeated."""
    rng = np.random.default_rng(0)
    pairs = [(i, j) for i in range(N - 1) for j in range(N) if i != j and rng.random() < 0.4]
    pairs.append(pairs[0])
    ei = np.array(pairs).T
    return ei, (rng.random(ei.shape[1]) + 0.1).astype(np.float32)


@pytest.mark.parametrize("which", [0, 1])
def test_supports_are_row_stochastic_random_walks(graph, which):
    ei, ew = graph
    sup = dual_random_walk_supports(ei, ew, N)[which].to_dense().double()
    ref = dense_supports(ei, ew, N)[which]
    torch.testing.assert_close(sup, ref, rtol=1e-6, atol=1e-7)
    rows = sup.sum(1)
    has_edges = ref.abs().sum(1) > 0
    torch.testing.assert_close(
        rows[has_edges], torch.ones(int(has_edges.sum()), dtype=torch.float64)
    )
    assert (rows[~has_edges] == 0).all()
    assert (~has_edges).any(), "fixture must include a node without edges in this direction"


def test_forward_support_follows_out_edges():
    # One edge 0 -> 1 with weight 3: the forward walk from 0 reaches 1, the reverse walk from 1 reaches 0.
    fwd, bwd = (s.to_dense() for s in dual_random_walk_supports([[0], [1]], [3.0], 2))
    assert fwd.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert bwd.tolist() == [[0.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize(
    "edge_index, edge_weight, match",
    [
        (np.zeros((3, 2), dtype=np.int64), np.ones(2), "edge_index"),
        (np.array([[0, 9], [1, 2]]), np.ones(2), "edge_index"),
        (np.array([[0, 1], [1, 2]]), np.ones(3), "edge_weight"),
        (np.array([[0, 1], [1, 2]]), np.array([1.0, -1.0]), "edge_weight"),
    ],
)
def test_supports_reject_bad_graphs(edge_index, edge_weight, match):
    with pytest.raises(ValueError, match=match):
        dual_random_walk_supports(edge_index, edge_weight, 3)


@pytest.mark.parametrize("threshold", [0.0, 1.1], ids=["dense", "csr"])
def test_diffusion_terms_follow_chebyshev_recursion(graph, threshold):
    ei, ew = graph
    op = diffusion_operator(ei, ew, N, 3, threshold).double()
    assert op.is_dense == (threshold == 0.0) and op.blocks == 1 + 2 * 3
    x = torch.randn(4, 5, N, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    terms = op(x)  # [C, T, N, B]
    assert terms.shape == (1 + 2 * 3, 4, 5, N, 3)
    for s, sup in enumerate(dense_supports(ei, ew, N)):
        t1 = sup @ x  # per channel and step: [N, N] @ [N, B]
        t2 = 2 * sup @ t1 - x
        t3 = 2 * sup @ t2 - t1
        for j, expected in enumerate([t1, t2, t3]):
            # the operator's supports are rounded to float32 (~6e-8 relative), the reference's are
            # not: over 300 draws the worst gap was 1.3e-6 absolute, 5e-7 of |expected| + 1
            torch.testing.assert_close(terms[1 + 3 * s + j], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms[0], x)


def test_diffusion_polynomials_stack_identity_and_powers(graph):
    supports = dual_random_walk_supports(*graph, N)
    dense = [s.to_dense().double() for s in supports]
    eye = torch.eye(N, dtype=torch.float64)
    got = diffusion_polynomials(supports, 2).to_dense().double().view(5, N, N)
    want = [eye] + [m for d in dense for m in (d, 2 * d @ d - eye)]
    torch.testing.assert_close(got, torch.stack(want), atol=1e-6, rtol=0)
    anchored = diffusion_polynomials(supports, 3, anchored=True).to_dense().double().view(7, N, N)
    d = dense[0]
    torch.testing.assert_close(anchored[3], 2 * d @ (2 * d @ d - eye) - eye, atol=1e-6, rtol=0)


def backward_nodes(out: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind ``out``."""
    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(fn for fn, _ in node.next_functions)
    return {node.name() for node in seen}


def test_product_over_many_slices_runs_in_chunks(graph, monkeypatch):
    """A product whose block-diagonal matrix would exceed the entry budget is split in slices."""
    op = diffusion_operator(*graph, N, 2, dense_threshold=1.1).double()
    x = torch.randn(6, N, 2, dtype=torch.float64, requires_grad=True)
    whole = op(x)
    # within the budget: one product, no split whose backward would copy the gradient whole
    assert not {"SplitBackward0", "CatBackward0"} & backward_nodes(whole)
    monkeypatch.setattr("pgti_core.models.propagation.MAX_BLOCK_ENTRIES", op.values.numel() * 4)
    op._products = {}
    chunked = op(x)
    assert "CatBackward0" in backward_nodes(chunked)
    assert set(op._products) == {4, 2}  # slices of 4 and the remaining 2
    torch.testing.assert_close(chunked, whole)
    assert torch.autograd.gradcheck(op, (x[:3].detach().requires_grad_(),))


@pytest.mark.parametrize("threshold", [0.0, 1.1], ids=["dense", "csr"])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_batched_diffusion_conv_equals_dense_reference(graph, threshold, k):
    ei, ew = graph
    torch.manual_seed(0)
    conv = DiffusionConv(3, 5, k=k).double()
    torch.nn.init.normal_(conv.bias)
    ops = diffusion_operator(ei, ew, N, k, threshold).double()
    x = torch.randn(4, N, 3, dtype=torch.float64)  # four different samples
    out = conv(x, ops)
    assert out.shape == (4, N, 5)
    ref = torch.stack([diffusion_conv(conv, xs, dense_supports(ei, ew, N)) for xs in x])
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_diffusion_conv_float32_matches_reference(graph):
    ei, ew = graph
    torch.manual_seed(1)
    conv = DiffusionConv(2, 2, k=2)
    x = torch.randn(3, N, 2)
    out = conv(x, diffusion_operator(ei, ew, N, 2))
    ref = torch.stack([diffusion_conv(conv, xs.double(), dense_supports(ei, ew, N)) for xs in x])
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)


def test_diffusion_conv_rejects_bad_input(graph):
    op = diffusion_operator(*graph, N, 2)
    conv = DiffusionConv(3, 2)
    with pytest.raises(ValueError, match="x"):
        conv(torch.randn(2, N, 4), op)
    with pytest.raises(ValueError, match="operator"):
        conv(torch.randn(2, N, 3), diffusion_operator(*graph, N, 1))
    with pytest.raises(ValueError, match="x"):
        op(torch.randn(2, N + 1, 3))
    with pytest.raises(ValueError, match="k"):
        DiffusionConv(3, 2, k=-1)
    with pytest.raises(ValueError, match="k"):
        diffusion_operator(*graph, N, -1)
    with pytest.raises(ValueError, match="supports"):
        diffusion_polynomials([], 2)


@pytest.mark.parametrize("threshold", [0.0, 1.1], ids=["dense", "csr"])
def test_graph_operator_gradients(graph, threshold):
    ei, ew = graph
    adj = dense_adjacency(ei, ew, N)
    op = GraphOperator(adj.to_sparse(), threshold)
    x = torch.randn(2, N, 3, dtype=torch.float64, requires_grad=True)  # [C, N, B]
    assert torch.autograd.gradcheck(op, (x,))
    torch.testing.assert_close(op(x), adj @ x)
    stacked = GraphOperator(torch.cat([adj, 2 * adj]).to_sparse(), threshold)
    assert stacked.blocks == 2 and torch.autograd.gradcheck(stacked, (x,))
    torch.testing.assert_close(stacked(x), torch.stack([adj @ x, 2 * adj @ x]))
    torch.testing.assert_close(op.to_dense(), adj)


def test_graph_operator_is_not_in_state_dict_and_follows_dtype(graph):
    op = GraphOperator(dense_adjacency(*graph, N).float().to_sparse(), dense_threshold=1.1)
    assert op.state_dict() == {}
    x = torch.randn(N, 3)
    y32 = op(x)  # builds the cached CSR views in float32
    y64 = op.double()(x.double())  # must rebuild them from the converted buffers
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32)
    with pytest.raises(ValueError, match="matrix"):
        GraphOperator(torch.zeros(2, 3))
