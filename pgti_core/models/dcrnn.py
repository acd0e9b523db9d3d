"""DCRNN (Li et al., "Diffusion Convolutional Recurrent Neural Network", ICLR 2018): the DCGRU cell,
the single-cell model of the PGT-I paper, and the reference encoder-decoder.

All models take ``x[B, lags, N, F]`` and return ``[B, horizon, N, C_out]``; they work channel-first
inside (``[C, T, N, B]``) so every diffusion and every channel mix is one matrix product over the
whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pgti_core.models.diffusion import (
    DiffusionConv,
    diffusion_mix,
    diffusion_operator,
)
from pgti_core.models.graph_gru import GraphGRUCell, check_input
from pgti_core.models.propagation import DENSE_THRESHOLD, EdgeArray, channel_mix


class DCGRUCell(GraphGRUCell):
    """Diffusion-convolutional GRU cell (Li et al. 2018) on channel-first ``[C, N, B]`` tensors.

    Gates and candidate are :class:`DiffusionConv` of ``[x, h]`` (gate bias starts at 1, as in
    DCRNN); the diffusion of ``x`` is shared by both. The graph passed to it is the stacked
    operator of :func:`diffusion_operator` (with the same ``k``), which fixes the recursion.

    Args:
        input_size (int): input channels F.
        hidden_size (int): hidden channels H.
        k (int, default 2): diffusion steps per support.
        num_supports (int, default 2): supports in the graph passed to ``forward``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        k: int = 2,
        num_supports: int = 2,
    ) -> None:
        super().__init__(input_size, hidden_size)
        size = input_size + hidden_size
        self.gates = DiffusionConv(size, 2 * hidden_size, k, num_supports)
        self.candidate = DiffusionConv(size, hidden_size, k, num_supports)
        nn.init.ones_(self.gates.bias)

    def conv(
        self, x: Tensor, graph: nn.Module, weight: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        return diffusion_mix(x, graph, weight, bias)

    def input_weights(self) -> tuple[Tensor, Tensor]:
        f = self.input_size
        weight = torch.cat([self.gates.weight_matrix(0, f), self.candidate.weight_matrix(0, f)], 1)
        return weight, torch.cat([self.gates.bias, self.candidate.bias])

    def hidden_weights(self) -> tuple[Tensor, Tensor]:
        f = self.input_size
        return self.gates.weight_matrix(f), self.candidate.weight_matrix(f)


class DCRNNPaper(nn.Module):
    """The PGT-I paper's DCRNN: one DCGRU cell whose hidden size equals the input size F, unrolled
    over the input steps; the state after input step t predicts target step t (all F channels).

    Args:
        num_nodes (int): N.
        num_features (int): F (also the hidden and output size).
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target).
        edge_weight (Tensor | ndarray | None): ``[E]`` non-negative weights.
        lags (int): input steps; must be >= ``horizon``.
        horizon (int): target steps (the last ``horizon`` states are returned).
        k (int, default 2): diffusion steps (PGT's ``K = 3``).
        dense_threshold (float, default ``DENSE_THRESHOLD``): density for a dense operator.
        diffusion (str, default ``"paper"``): ``"pgt"``: PGT 0.56's operator (see
            :mod:`pgti_core.models.diffusion`).
    """

    def __init__(
        self,
        num_nodes: int,
        num_features: int,
        edge_index: EdgeArray,
        edge_weight: EdgeArray | None,
        lags: int,
        horizon: int,
        k: int = 2,
        dense_threshold: float = DENSE_THRESHOLD,
        diffusion: str = "paper",
    ) -> None:
        super().__init__()
        if not 1 <= horizon <= lags:
            raise ValueError(
                f"horizon: dcrnn-paper predicts one target step per input step; needs 1 <= horizon "
                f"<= lags ({lags}), got {horizon}"
            )
        self.num_nodes, self.num_features, self.horizon = num_nodes, num_features, horizon
        self.graph = diffusion_operator(
            edge_index, edge_weight, num_nodes, k, dense_threshold, diffusion
        )
        self.cell = DCGRUCell(num_features, num_features, k)

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, lags, N, F]`` -> ``[B, horizon, N, F]``."""
        check_input(x, self.num_nodes, self.num_features)
        if x.size(1) < self.horizon:
            raise ValueError(f"x: needs at least horizon={self.horizon} steps, got {x.size(1)}")
        states = self.cell.scan(x.permute(3, 1, 2, 0), self.graph)
        return states.narrow(1, x.size(1) - self.horizon, self.horizon).permute(3, 1, 2, 0)


class DCRNN(nn.Module):
    """The reference DCRNN (Li et al. 2018): stacked DCGRU encoder and decoder; the decoder starts
    from a zero GO symbol and is fed its own previous prediction of feature 0 (no teacher forcing).

    Args:
        num_nodes (int): N.
        num_features (int): F.
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target).
        edge_weight (Tensor | ndarray | None): ``[E]`` non-negative weights.
        horizon (int): target steps predicted.
        hidden_size (int, default 64): units per layer.
        num_layers (int, default 2): DCGRU layers in the encoder and in the decoder.
        k (int, default 2): diffusion steps (DCRNN's ``max_diffusion_step``).
        dense_threshold (float, default ``DENSE_THRESHOLD``): density for a dense operator.
        diffusion (str, default ``"paper"``): ``"pgt"``: PGT 0.56's operator.
    """

    def __init__(
        self,
        num_nodes: int,
        num_features: int,
        edge_index: EdgeArray,
        edge_weight: EdgeArray | None,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        k: int = 2,
        dense_threshold: float = DENSE_THRESHOLD,
        diffusion: str = "paper",
    ) -> None:
        super().__init__()
        if horizon < 1 or num_layers < 1 or hidden_size < 1:
            raise ValueError(
                f"horizon, num_layers, hidden_size: must be >= 1, got {horizon}, {num_layers}, "
                f"{hidden_size}"
            )
        self.num_nodes, self.num_features, self.horizon = num_nodes, num_features, horizon
        self.graph = diffusion_operator(
            edge_index, edge_weight, num_nodes, k, dense_threshold, diffusion
        )
        sizes = [hidden_size] * (num_layers - 1)
        self.encoder = nn.ModuleList(DCGRUCell(i, hidden_size, k) for i in [num_features, *sizes])
        self.decoder = nn.ModuleList(DCGRUCell(i, hidden_size, k) for i in [1, *sizes])
        self.projection = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, lags, N, F]`` -> ``[B, horizon, N, 1]`` (feature 0)."""
        check_input(x, self.num_nodes, self.num_features)
        seq = x.permute(3, 1, 2, 0)
        states = []
        for cell in self.encoder:
            seq = cell.scan(seq, self.graph)
            states.append(seq[:, -1])
        out = x.new_zeros(1, self.num_nodes, x.size(0))
        preds = []
        for _ in range(self.horizon):
            inp = out
            for i, cell in enumerate(self.decoder):
                states[i] = cell.step(inp, states[i], self.graph)
                inp = states[i]
            out = channel_mix(inp, self.projection.weight.t(), self.projection.bias)
            preds.append(out)
        return torch.stack(preds, 1).permute(3, 1, 2, 0)
