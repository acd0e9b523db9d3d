"""T-GCN (Zhao et al., "T-GCN: A Temporal Graph Convolutional Network for Traffic Prediction",
IEEE T-ITS 2019): a GRU whose matmuls are GCN layers, then a linear head from the last state.

The GCN matrix is PyTorch Geometric's ``GCNConv`` normalization ``D^-1/2 (A + I) D^-1/2`` (in
degrees, messages flow source -> target), kept as one ``[N, N]`` operator applied to the whole
batch in channel-first layout (:mod:`pgti_core.models.propagation`) instead of a per-sample copy
of the edge index.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pgti_core.models.graph_gru import GraphGRUCell, Weights, check_input
from pgti_core.models.propagation import (
    DENSE_THRESHOLD,
    EdgeArray,
    GraphOperator,
    channel_mix,
    edge_tensors,
)
from pgti_core.models.tgcn_step import tgcn_step


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


class TGCNCell(GraphGRUCell):
    """T-GCN cell: gates and candidate are ``A_hat [x, h] W + b`` (gate bias starts at 1, as in
    the reference code), ``h' = u h + (1 - u) c``, channel-first ``[C, N, B]`` throughout.

    Each step propagates ``[x, h]`` and mixes it in one GEMM with K = F + H, inside one autograd
    Function (:func:`.tgcn_step`); against autograd over the same operations it cut a train step at
    N = 325, B = 64, H = 64 on one thread from 612 to 569 ms with freed memory kept mapped and from
    685 to 602 ms with glibc's default allocator (medians of 7 interleaved rounds). The split of
    :class:`GraphGRUCell` (the input share as the hidden GEMMs' bias) gives the same states but was
    slower still: 868 against 768 ms (median of 6 interleaved rounds).

    Args:
        input_size (int): input channels F.
        hidden_size (int): hidden channels H.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.gates = nn.Linear(input_size + hidden_size, 2 * hidden_size)
        self.candidate = nn.Linear(input_size + hidden_size, hidden_size)
        for lin, bias in ((self.gates, 1.0), (self.candidate, 0.0)):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.constant_(lin.bias, bias)

    def conv(
        self, x: Tensor, graph: nn.Module, weight: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        return channel_mix(graph(x), weight, bias)

    def step(self, x: Tensor, h: Tensor, graph: nn.Module, weights: Weights = ()) -> Tensor:
        """One step from ``x[F, N, B]`` and ``h[H, N, B]`` (:func:`.tgcn_step`, one Function with
        a hand-written backward); ``weights`` is not used (the gates' and candidate's own
        matrices mix ``[x, h]`` whole)."""
        return tgcn_step(
            graph(x), h, (self.gates.weight, self.gates.bias),
            (self.candidate.weight, self.candidate.bias), graph,
        )  # fmt: skip

    def input_weights(self) -> tuple[Tensor, Tensor]:
        f = self.input_size
        weight = torch.cat([self.gates.weight[:, :f], self.candidate.weight[:, :f]]).t()
        return weight, torch.cat([self.gates.bias, self.candidate.bias])

    def hidden_weights(self) -> tuple[Tensor, Tensor]:
        f = self.input_size
        return self.gates.weight[:, f:].t(), self.candidate.weight[:, f:].t()


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
        *_, last = self.cell.states(x.permute(3, 1, 2, 0), self.gcn)  # only the last is read
        return (
            channel_mix(last, self.head.weight.t(), self.head.bias).permute(2, 0, 1).unsqueeze(-1)
        )
