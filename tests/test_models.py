"""Batched models equal their per-sample references, train, and are built by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference_models import per_sample

from pgti_core.models import (
    MODELS,
    DCRNNPaper,
    GraphOperator,
    TGCNCell,
    build_model,
    gcn_matrix,
)
from pgti_core.models.graph_gru import GraphGRUCell

N, F, LAGS, HORIZON = 7, 2, 5, 3
SMALL = {
    "dcrnn-paper": {},
    "dcrnn": {"hidden_size": 8},
    "tgcn": {"hidden_size": 8},
    "a3tgcn": {"hidden_size": 8},
}
OUT_CHANNELS = {"dcrnn-paper": F, "dcrnn": 1, "tgcn": 1, "a3tgcn": 1}


@pytest.fixture(scope="module")
def graph() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pairs = [(i, j) for i in range(N) for j in range(N) if i != j and rng.random() < 0.35]
    ei = np.array(pairs).T
    return ei, (rng.random(ei.shape[1]) + 0.1).astype(np.float32)


def make(name: str, graph, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        name,
        num_nodes=N,
        num_features=F,
        edge_index=graph[0],
        edge_weight=graph[1],
        lags=LAGS,
        horizon=HORIZON,
        **{**SMALL[name], **kwargs},
    )


def batch(b: int = 3, dtype=torch.float64) -> torch.Tensor:
    """``b`` clearly different samples (distinct scales and offsets)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(b, LAGS, N, F, generator=gen, dtype=dtype)
    return x * torch.arange(1, b + 1, dtype=dtype).view(b, 1, 1, 1) + torch.arange(
        b, dtype=dtype
    ).view(b, 1, 1, 1)


@pytest.mark.parametrize("threshold", [0.0, 1.1], ids=["dense", "csr"])
@pytest.mark.parametrize("name", MODELS)
def test_batched_model_equals_per_sample_reference(graph, name, threshold):
    model = make(name, graph, dense_threshold=threshold).double()
    x = batch()
    out = model(x)
    assert out.shape == (3, HORIZON, N, OUT_CHANNELS[name])
    ref = per_sample(model, x, *graph)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # The samples really differ, so a graph op applied to sample 0 only could not pass.
    assert (ref[1] - ref[0]).abs().max() > 1e-2


@pytest.mark.parametrize("name", MODELS)
def test_float32_model_equals_float64_reference(graph, name):
    model = make(name, graph)
    x = batch(dtype=torch.float32)
    ref = per_sample(model.double(), x.double(), *graph)
    torch.testing.assert_close(make(name, graph)(x).double(), ref, atol=1e-5, rtol=0)


def test_reference_check_catches_graph_op_on_sample_zero_only(graph, monkeypatch):
    """PGT's bug: the graph convolution of sample 0 reused for the whole batch."""
    model = make("dcrnn-paper", graph, dense_threshold=1.1).double()
    x = batch()
    honest = GraphOperator.forward

    def sample_zero_only(self, h):
        out = honest(self, h)
        return out[..., :1].expand_as(out)  # batch is the last axis

    monkeypatch.setattr(GraphOperator, "forward", sample_zero_only)
    assert not torch.allclose(model(x), per_sample(model, x, *graph), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_batch_order_is_respected(graph, name):
    model = make(name, graph).double()
    x = batch()
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(model(x[perm]), model(x)[perm], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(graph, name):
    model = make(name, graph)
    model(batch(dtype=torch.float32))[..., 0].abs().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_dcrnn_paper_parameter_count():
    # 3 diffusion convs (reset, update, candidate) of 2 supports x 3 terms x 4 in x 2 out + 2 bias.
    model = DCRNNPaper(325, 2, [[0, 1], [1, 0]], [1.0, 1.0], lags=12, horizon=12)
    assert sum(p.numel() for p in model.parameters()) == 3 * (2 * 3 * 4 * 2 + 2) == 150


def test_reference_sizes_parameter_counts(graph):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    # DCGRU(in, 64): gates 2*3*(in+64)*128 + 128, candidate 2*3*(in+64)*64 + 64.
    def dcgru(i):
        return 6 * (i + 64) * 192 + 192

    dcrnn = make("dcrnn", graph, hidden_size=64, num_layers=2)
    assert count(dcrnn) == dcgru(F) + dcgru(64) + dcgru(1) + dcgru(64) + 65
    tgcn = make("tgcn", graph, hidden_size=64)
    assert count(tgcn) == (F + 64) * 192 + 192 + 64 * HORIZON + HORIZON
    # The artifact's A3T-GCN: T-GCN(2, 32), one attention weight per period, Linear(32, 12).
    a3tgcn = build_model(
        "a3tgcn",
        num_nodes=N,
        num_features=2,
        edge_index=graph[0],
        edge_weight=graph[1],
        lags=12,
        horizon=12,
    )
    assert count(a3tgcn) == (2 + 32) * 96 + 96 + 12 + 32 * 12 + 12


@pytest.mark.parametrize("name", MODELS)
def test_init_is_deterministic_given_seed(graph, name):
    a, b, c = (dict(make(name, graph, seed=s).named_parameters()) for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_build_model_rejects_bad_configuration(graph):
    with pytest.raises(ValueError, match="dcrnn-paper, dcrnn, tgcn, a3tgcn"):
        build_model(
            "gru",
            num_nodes=N,
            num_features=F,
            edge_index=graph[0],
            edge_weight=graph[1],
            lags=LAGS,
            horizon=HORIZON,
        )
    with pytest.raises(ValueError, match="horizon"):
        DCRNNPaper(N, F, *graph, lags=3, horizon=4)
    model = make("tgcn", graph)
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(2, LAGS, N + 1, F))


@pytest.mark.parametrize("threshold", [0.0, 1.1], ids=["dense", "csr"])
def test_tgcn_concatenated_step_equals_split_shares(graph, threshold):
    """T-GCN's own step (one GEMM over ``[x, h]``) and the shared split step (input share as
    the hidden GEMMs' bias) are the same convolution, so they give the same state."""
    torch.manual_seed(0)
    cell = TGCNCell(F, 8).double()
    op = GraphOperator(gcn_matrix(*graph, N), dense_threshold=threshold).double()
    x, h = torch.randn(F, N, 3, dtype=torch.float64), torch.randn(8, N, 3, dtype=torch.float64)
    torch.testing.assert_close(cell.step(x, h, op), GraphGRUCell.step(cell, x, h, op))


def test_gcn_matrix_is_pyg_gcnconv_propagation(graph):
    GCNConv = pytest.importorskip("torch_geometric.nn").GCNConv  # the peers extra

    conv = GCNConv(3, 3, bias=False)
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(3))
    ei, ew = (torch.as_tensor(a) for a in graph)
    x = torch.randn(N, 3)
    op = GraphOperator(gcn_matrix(*graph, N), dense_threshold=1.1)
    torch.testing.assert_close(op(x), conv(x, ei, ew), atol=1e-6, rtol=0)


def test_gcn_matrix_matches_pyg_with_self_loops_and_isolated_nodes():
    gcn_norm = pytest.importorskip("torch_geometric.nn.conv.gcn_conv").gcn_norm  # the peers extra
    ei = torch.tensor([[0, 1, 1, 2, 0], [1, 0, 1, 0, 2]])  # node 1 has a loop (0.5), node 3 none
    ew = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    want_ei, want_ew = gcn_norm(ei, ew, 4, add_self_loops=True)
    want = torch.zeros(4, 4).index_put_((want_ei[1], want_ei[0]), want_ew, accumulate=True)
    torch.testing.assert_close(gcn_matrix(ei, ew, 4).to_dense(), want)
