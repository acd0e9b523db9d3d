"""T-GCN (Zhao et al., "T-GCN: A Temporal Graph Convolutional Network for Traffic Prediction",
IEEE T-ITS 2019): a GRU whose matmuls are GCN layers, then a linear head from the last state.

The GCN matrix is PyTorch Geometric's ``GCNConv`` normalization ``D^-1/2 (A + I) D^-1/2`` (in
degrees, messages flow source -> target), kept as one ``[N, N]`` operator applied to the whole
batch in node-major layout instead of a per-sample copy of the edge index.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pgti_core.models.graph_gru import check_input
from pgti_core.models.propagation import (
    DENSE_THRESHOLD,
    EdgeArray,
    GraphOperator,
    channel_mix,
    edge_tensors,
)


def gcn_matrix(edge_index: EdgeArray, edge_weight: EdgeArray | None, num_nodes: int) -> Tensor:
    """``GCNConv``'s normalized adjacency with self-loops as a sparse COO ``[N, N]`` (row = target).

    Args:
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target).
        edge_weight (Tensor | ndarray | None): ``[E]`` weights (``None``: all 1).
        num_nodes (int): N.
    """
    ei, ew = edge_tensors(edge_index, edge_weight, num_nodes)
    # PyG's gcn_norm(add_self_loops=True): a node's own loop keeps its weight, others get 1 ...
    loop = ei[0] == ei[1]
    self_w = torch.ones(num_nodes, dtype=ew.dtype).index_put_((ei[0, loop],), ew[loop])
    nodes = torch.arange(num_nodes, dtype=ei.dtype)
    ei = torch.cat([ei[:, ~loop], torch.stack([nodes, nodes])], dim=1)
    ew = torch.cat([ew[~loop], self_w])
    # ... then weights / sqrt(in-degree of source * in-degree of target), 0 for isolated nodes.
    deg_inv_sqrt = torch.zeros(num_nodes, dtype=ew.dtype).index_add_(0, ei[1], ew).pow(-0.5)
    deg_inv_sqrt.masked_fill_(torch.isinf(deg_inv_sqrt), 0.0)
    ew = deg_inv_sqrt[ei[0]] * ew * deg_inv_sqrt[ei[1]]
    return torch.sparse_coo_tensor(
        ei.flip(0), ew, (num_nodes, num_nodes), check_invariants=True
    ).coalesce()


class TGCNCell(nn.Module):
    """T-GCN cell: gates and candidate are ``A_hat [x, h] W + b`` (gate bias starts at 1, as in
    the reference code), ``h' = u h + (1 - u) c``, node-major ``[N, B, C]`` throughout.

    Each step propagates the concatenated ``[x, h]`` once and mixes it in one GEMM with K = F + H.
    Splitting off the input share for the whole sequence (as the DCGRU cell does) made its
    ``[N, T, B, 3H]`` gradient and skinny K = F GEMMs cost more than they saved: 1.41 s against
    0.80 s per train step at N = 325, B = 64, H = 64 on one thread.

    Args:
        input_size (int): input channels F.
        hidden_size (int): hidden channels H.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.gates = nn.Linear(input_size + hidden_size, 2 * hidden_size)
        self.candidate = nn.Linear(input_size + hidden_size, hidden_size)
        for lin, bias in ((self.gates, 1.0), (self.candidate, 0.0)):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.constant_(lin.bias, bias)

    def step(self, x: Tensor, h: Tensor, graph: nn.Module) -> Tensor:
        """One step: input ``x[N, B, F]``, state ``h[N, B, H]`` -> the next state."""
        gates = channel_mix(graph(torch.cat([x, h], -1)), self.gates.weight.t(), self.gates.bias)
        r, u = torch.sigmoid(gates).chunk(2, dim=-1)
        cand = graph(torch.cat([x, r * h], -1))
        c = torch.tanh(channel_mix(cand, self.candidate.weight.t(), self.candidate.bias))
        return torch.lerp(c, h, u)

    def scan(self, x: Tensor, graph: nn.Module, h: Tensor | None = None) -> Tensor:
        """Run over ``x[N, T, B, F]`` from ``h`` (zeros by default); returns states ``[N, T, B, H]``."""
        if h is None:
            h = x.new_zeros(x.size(0), x.size(2), self.hidden_size)
        states = []
        for x_t in x.unbind(1):  # unbind, not slicing: a slice's backward zero-fills all steps
            h = self.step(x_t, h, graph)
            states.append(h)
        return torch.stack(states, dim=1)


class TGCN(nn.Module):
    """T-GCN over the input steps, then a linear map of the final state to ``horizon`` outputs.

    Args:
        num_nodes (int): N.
        num_features (int): F.
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target).
        edge_weight (Tensor | ndarray | None): ``[E]`` weights.
        horizon (int): target steps predicted (feature 0).
        hidden_size (int, default 64): GRU units.
        dense_threshold (float, default ``DENSE_THRESHOLD``): density for a dense GCN matrix.
    """

    def __init__(
        self,
        num_nodes: int,
        num_features: int,
        edge_index: EdgeArray,
        edge_weight: EdgeArray | None,
        horizon: int,
        hidden_size: int = 64,
        dense_threshold: float = DENSE_THRESHOLD,
    ) -> None:
        super().__init__()
        if horizon < 1 or hidden_size < 1:
            raise ValueError(f"horizon, hidden_size: must be >= 1, got {horizon}, {hidden_size}")
        self.num_nodes, self.num_features = num_nodes, num_features
        self.gcn = GraphOperator(gcn_matrix(edge_index, edge_weight, num_nodes), dense_threshold)
        self.cell = TGCNCell(num_features, hidden_size)
        self.head = nn.Linear(hidden_size, horizon)

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, lags, N, F]`` -> ``[B, horizon, N, 1]``."""
        check_input(x, self.num_nodes, self.num_features)
        last = self.cell.scan(x.permute(2, 1, 0, 3), self.gcn)[:, -1]
        return (
            channel_mix(last, self.head.weight.t(), self.head.bias).permute(1, 2, 0).unsqueeze(-1)
        )
