"""``--diffusion pgt``: PGT 0.56 ``BatchedDConv``'s operator against a written-out formula of its
code (unweighted messages, unpermuted reverse normalization, anchored recursion), its edge-order
dependence, and the whole PGT-I cell against the PGT reference with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")  # the peers extra: the PGT reference

from bench.peers.pgt_reference import BatchedDCRNNReference  # noqa: E402
from pgti_core.models import DCRNNPaper, DiffusionConv, diffusion_operator  # noqa: E402
from pgti_core.models.diffusion import pgt_supports  # noqa: E402

N = 6


@pytest.fixture
def graph() -> tuple[np.ndarray, np.ndarray]:
    """Distinct directed edges, every node with in-edges, weights far from 1, shuffled order."""
    rng = np.random.default_rng(1)
    pairs = [(i, (i + 1) % N) for i in range(N)]  # a ring: every node has an in-edge
    pairs += [(i, j) for i in range(N) for j in range(N) if i != j and rng.random() < 0.3]
    ei = np.array(sorted(set(pairs))).T[:, rng.permutation(len(set(pairs)))]
    return ei, (rng.random(ei.shape[1]) * 3 + 0.2).astype(np.float32)


def pgt_formula(x: np.ndarray, ei: np.ndarray, ew: np.ndarray, w: np.ndarray, b: np.ndarray):
    """PGT 0.56 ``BatchedDConv.forward`` written out in numpy for one sample ``x[N, C]``."""
    adj = np.zeros((N, N))
    np.add.at(adj, (ei[0], ei[1]), ew)  # to_dense_adj
    deg_out, deg_in = adj.sum(1), adj.sum(0)
    norm_out, norm_in = 1 / deg_out[ei[0]], 1 / deg_in[ei[0]]  # both indexed by row
    rev = np.argwhere(adj.T != 0).T  # dense_to_sparse(adj^T): row-major order

    def propagate(edges, norm, h):  # flow source_to_target, message norm * x_j, aggr add
        out = np.zeros_like(h)
        for e in range(edges.shape[1]):
            out[edges[1, e]] += norm[e] * h[edges[0, e]]
        return out

    k_terms = w.shape[1]
    out = x @ w[0, 0] + x @ w[1, 0]
    t0, t_o, t_i = x, propagate(ei, norm_out, x), propagate(rev, norm_in, x)
    out = out + t_o @ w[0, 1] + t_i @ w[1, 1]
    for k in range(2, k_terms):
        t2_o, t2_i = 2 * propagate(ei, norm_out, t_o) - t0, 2 * propagate(rev, norm_in, t_i) - t0
        out = out + t2_o @ w[0, k] + t2_i @ w[1, k]
        t0, t_o, t_i = x, t2_o, t2_i  # PGT: Tx_0 = Tx_1, which is still X
    return out + b


def _conv_out(ei, ew, x, k, diffusion="pgt", threshold=0.15):
    torch.manual_seed(0)
    conv = DiffusionConv(x.shape[-1], 3, k=k).double()
    with torch.no_grad():
        conv.bias.uniform_(-1, 1)
    ops = diffusion_operator(ei, ew, N, k, threshold, diffusion).double()
    return conv, conv(torch.from_numpy(x), ops).detach().numpy()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("threshold", [0.0, 2.0])  # dense and CSR operators
def test_pgt_operator_equals_written_out_formula(graph, k, threshold):
    ei, ew = graph
    x = np.random.default_rng(2).standard_normal((4, N, 2))
    conv, got = _conv_out(ei, ew, x, k, threshold=threshold)
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    want = np.stack([pgt_formula(xs, ei, ew.astype(np.float64), w, b) for xs in x])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_pgt_operator_depends_on_edge_order_and_paper_does_not(graph):
    ei, ew = graph
    perm = np.random.default_rng(3).permutation(ei.shape[1])
    x = np.random.default_rng(2).standard_normal((2, N, 2))
    pgt_a, pgt_b = (_conv_out(e, w, x, 2)[1] for e, w in ((ei, ew), (ei[:, perm], ew[perm])))
    assert np.abs(pgt_a - pgt_b).max() > 1e-3
    conv, _ = _conv_out(ei[:, perm], ew[perm], x, 2)
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    want_b = np.stack([pgt_formula(xs, ei[:, perm], ew[perm].astype(np.float64), w, b) for xs in x])
    np.testing.assert_allclose(pgt_b, want_b, rtol=1e-5, atol=1e-6)
    paper = [_conv_out(e, w, x, 2, "paper")[1] for e, w in ((ei, ew), (ei[:, perm], ew[perm]))]
    np.testing.assert_allclose(paper[0], paper[1], rtol=1e-6, atol=1e-7)
    assert np.abs(pgt_a - paper[0]).max() > 1e-3  # and the two operators differ


def test_pgt_messages_ignore_weights_but_degrees_do_not(graph):
    ei, ew = graph
    fwd, _ = pgt_supports(ei, ew, N)
    dense = fwd.to_dense()
    deg_out = np.zeros(N)
    np.add.at(deg_out, ei[0], ew)
    for s, t in ei.T:
        assert dense[t, s].item() == pytest.approx(1 / deg_out[s], rel=1e-6)
    assert int((dense != 0).sum()) == ei.shape[1]


def test_dcrnn_paper_pgt_equals_pgt_reference_with_same_weights(graph):
    ei, ew = graph
    torch.manual_seed(0)
    ref = BatchedDCRNNReference(N, ei, ew, 2, 2, K=3, horizon=4).double()
    ours = DCRNNPaper(N, 2, ei, ew, lags=5, horizon=4, k=2, diffusion="pgt").double()
    with torch.no_grad():
        for conv, r, z in ((ours.cell.gates, ref.conv_r, ref.conv_z),):
            conv.weight.copy_(torch.cat([r.weight, z.weight], dim=-1))
            conv.bias.copy_(torch.cat([r.bias, z.bias]).uniform_(-0.5, 0.5))
            r.bias.copy_(conv.bias[:2])
            z.bias.copy_(conv.bias[2:])
        ours.cell.candidate.weight.copy_(ref.conv_h.weight)
        ours.cell.candidate.bias.copy_(ref.conv_h.bias.uniform_(-0.5, 0.5))
    x = torch.randn(3, 5, N, 2, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-7)
    paper = DCRNNPaper(N, 2, ei, ew, lags=5, horizon=4, k=2).double()
    paper.load_state_dict(ours.state_dict())
    assert (paper(x) - ref(x)).abs().max() > 1e-3  # the paper's operator is not PGT's


@pytest.mark.parametrize(
    ("edges", "weights", "match"),
    [
        ([[0, 0, 1], [1, 1, 0]], None, "distinct"),
        ([[0, 1], [1, 0]], [1.0, 0.0], "non-zero"),
        ([[0, 1, 2], [1, 0, 1]], None, "in-degree"),  # node 2 is a source without in-edges
    ],
)
def test_pgt_supports_reject_graphs_pgt_cannot_run(edges, weights, match):
    with pytest.raises(ValueError, match=match):
        pgt_supports(np.array(edges), None if weights is None else np.array(weights), 3)
    with pytest.raises(ValueError, match="diffusion"):
        diffusion_operator(np.array([[0], [1]]), None, 3, 2, diffusion="nope")
