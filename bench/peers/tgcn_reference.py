"""A PGT-style batched T-GCN (``TGCN2``'s approach): the batch becomes one disjoint graph of
``B * N`` nodes, the edge index replicated per sample, and every graph convolution is PyG message
passing over it. It computes the same function as :class:`pgti_core.models.TGCN` (Zhao et al.:
``GCN([x, h])`` in the gates and the candidate) so the benchmark compares the batching, not the
model; the GCN normalization of the replicated graph is computed once per forward, not per
convolution as PGT does, so a speedup over it is conservative.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from bench.peers.pgt_reference import replicate_edges
from pgti_core.models import TGCN


class _Propagate(MessagePassing):
    """``sum_j norm_ij x_j`` over the edges (PyG's ``GCNConv`` propagation without its linear)."""

    def __init__(self) -> None:
        super().__init__(aggr="add", flow="source_to_target")

    def message(self, x_j: Tensor, norm: Tensor) -> Tensor:
        return norm.view(-1, 1) * x_j

    def forward(self, x: Tensor, edge_index: Tensor, norm: Tensor) -> Tensor:
        return self.propagate(edge_index, x=x, norm=norm)


class TGCNReference(nn.Module):
    """T-GCN on the batch-replicated graph; its parameters mirror :class:`TGCN`'s by name.

    Args:
        num_nodes (int): N.
        num_features (int): F.
        edge_index (Tensor | ndarray): ``[2, E]`` graph of one sample.
        edge_weight (Tensor | ndarray): ``[E]`` weights.
        horizon (int): target steps predicted (feature 0).
        hidden_size (int, default 64): GRU units.
    """

    def __init__(
        self,
        num_nodes: int,
        num_features: int,
        edge_index: Tensor | np.ndarray,
        edge_weight: Tensor | np.ndarray,
        horizon: int,
        hidden_size: int = 64,
    ) -> None:
        super().__init__()
        self.num_nodes, self.hidden = num_nodes, hidden_size
        self.register_buffer(
            "edge_index", torch.as_tensor(np.asarray(edge_index), dtype=torch.long)
        )
        self.register_buffer(
            "edge_weight", torch.as_tensor(np.asarray(edge_weight), dtype=torch.float32)
        )
        self.gates = nn.Linear(num_features + hidden_size, 2 * hidden_size)
        self.candidate = nn.Linear(num_features + hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, horizon)
        self.prop = _Propagate()

    def load_from(self, model: TGCN) -> TGCNReference:
        """Copy the gates, candidate and head of a :class:`TGCN` (for equality checks)."""
        for name in ("gates", "candidate"):
            getattr(self, name).load_state_dict(getattr(model.cell, name).state_dict())
        self.head.load_state_dict(model.head.state_dict())
        return self

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, lags, N, F]`` -> ``[B, horizon, N, 1]``."""
        b, lags, n, f = x.shape
        ei = replicate_edges(self.edge_index, n, b)
        ei, norm = gcn_norm(ei, self.edge_weight.repeat(b).to(x.dtype), b * n, add_self_loops=True)
        h = x.new_zeros(b * n, self.hidden)
        for t in range(lags):
            xt = x[:, t].reshape(b * n, f)
            r, u = torch.sigmoid(self.gates(self.prop(torch.cat([xt, h], 1), ei, norm))).chunk(2, 1)
            c = torch.tanh(self.candidate(self.prop(torch.cat([xt, r * h], 1), ei, norm)))
            h = u * h + (1 - u) * c
        return self.head(h).view(b, n, -1).permute(0, 2, 1).unsqueeze(-1)
