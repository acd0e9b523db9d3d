"""A3T-GCN (Bai et al., "A3T-GCN: Attention Temporal Graph Convolutional Network for Traffic
Forecasting", ISPRS IJGI 2021): a T-GCN over the input periods whose hidden states are combined by
a learned softmax attention over the periods, then ReLU and a linear head to ``horizon`` outputs.

This is the METR-LA model of the PGT-I artifact (PGT's ``A3TGCN2(in_channels=2, out_channels=32,
periods=12)``, ReLU, ``Linear(32, 12)``), batched here without replicating the edge index: the
T-GCN runs on the whole batch in channel-first layout (:mod:`pgti_core.models.tgcn`). As in the paper,
the T-GCN state is carried from period to period; PGT 0.56's ``A3TGCN2`` instead restarts every
period from the state it was given (zeros), and its ``TGCN2`` convolves only the input, not the
state (README: differences from PGT).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pgti_core.models.graph_gru import check_input
from pgti_core.models.propagation import DENSE_THRESHOLD, EdgeArray, GraphOperator, channel_mix
from pgti_core.models.tgcn import TGCNCell, gcn_matrix


class A3TGCN(nn.Module):
    """Attention-weighted T-GCN over the input periods: ``x[B, lags, N, F]`` -> ``[B, horizon, N, 1]``.

    Args:
        num_nodes (int): N.
        num_features (int): F.
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target).
        edge_weight (Tensor | ndarray | None): ``[E]`` weights.
        lags (int): input periods attended over.
        horizon (int): target steps predicted (feature 0).
        hidden_size (int, default 32): T-GCN units (the artifact's 32).
        dense_threshold (float, default ``DENSE_THRESHOLD``): density for a dense GCN matrix.
    """

    def __init__(
        self,
        num_nodes: int,
        num_features: int,
        edge_index: EdgeArray,
        edge_weight: EdgeArray | None,
        lags: int,
        horizon: int,
        hidden_size: int = 32,
        dense_threshold: float = DENSE_THRESHOLD,
    ) -> None:
        super().__init__()
        if lags < 1 or horizon < 1 or hidden_size < 1:
            raise ValueError(
                f"lags, horizon, hidden_size: must be >= 1, got {lags}, {horizon}, {hidden_size}"
            )
        self.num_nodes, self.num_features, self.lags = num_nodes, num_features, lags
        self.gcn = GraphOperator(gcn_matrix(edge_index, edge_weight, num_nodes), dense_threshold)
        self.cell = TGCNCell(num_features, hidden_size)
        self.attention = nn.Parameter(torch.empty(lags).uniform_())  # PGT's init: U(0, 1)
        self.head = nn.Linear(hidden_size, horizon)

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, lags, N, F]`` -> ``[B, horizon, N, 1]``."""
        check_input(x, self.num_nodes, self.num_features)
        if x.size(1) != self.lags:
            raise ValueError(f"x: A3T-GCN attends over {self.lags} periods, got {x.size(1)}")
        states = self.cell.scan(x.permute(3, 1, 2, 0), self.gcn)  # [H, T, N, B]
        probs = torch.softmax(self.attention, dim=0)
        context = torch.einsum("t,htnb->hnb", probs, states)
        out = channel_mix(torch.relu(context), self.head.weight.t(), self.head.bias)
        return out.permute(2, 0, 1).unsqueeze(-1)
