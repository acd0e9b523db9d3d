"""The GRU update of a graph recurrent cell whose convolution splits into shares (DCGRU, Li 2018).

The cell replaces the GRU's matmuls with a linear graph convolution of ``[x, h]``. Being linear, the
convolution splits into an input share and a hidden share: the input share of the gates and the
candidate is computed for a whole sequence in one pass (the inputs do not depend on the
recurrence), and each step convolves only the hidden state. Tensors are node-major
``[N, ..., B, C]`` throughout (see :mod:`pgti_core.models.propagation`): no step changes layout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_input(x: Tensor, num_nodes: int, num_features: int) -> None:
    """Raise ``ValueError`` unless a model input ``x`` is ``[B, lags, num_nodes, num_features]``."""
    if x.dim() != 4 or x.size(2) != num_nodes or x.size(3) != num_features:
        raise ValueError(
            f"x: expected [B, lags, {num_nodes}, {num_features}], got {tuple(x.shape)}"
        )


class GraphGRUCell(nn.Module):
    """GRU cell over node-major graph signals; subclasses supply the graph convolution.

    ``r, u = sigmoid(conv_g([x, h]))``, ``c = tanh(conv_c([x, r h]))``, ``h' = u h + (1 - u) c``.
    A subclass implements :meth:`conv` (its graph convolution with a given channel-mixing matrix)
    and says which matrices mix the input and the hidden channels.

    Args:
        input_size (int): input channels.
        hidden_size (int): hidden channels H.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size

    def conv(
        self, x: Tensor, graph: nn.Module, weight: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        """Graph convolution of ``x[N, ..., C]`` mixed by ``weight``: -> ``[N, ..., O]``."""
        raise NotImplementedError

    def input_weights(self) -> tuple[Tensor, Tensor]:
        """Mixing matrix and bias of the input share of gates and candidate (``3H`` outputs)."""
        raise NotImplementedError

    def hidden_weights(self) -> tuple[Tensor, Tensor]:
        """Mixing matrices of the hidden share of the gates (``2H`` outputs) and candidate (``H``)."""
        raise NotImplementedError

    def input_part(self, x: Tensor, graph: nn.Module) -> Tensor:
        """Input share of gates and candidate, biases included: ``[N, ..., C]`` -> ``[N, ..., 3H]``."""
        return self.conv(x, graph, *self.input_weights())

    def forward(
        self,
        x_gates: Tensor,
        x_cand: Tensor,
        h: Tensor,
        graph: nn.Module,
        weights: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """One step from the input shares ``x_gates[N, B, 2H]``, ``x_cand[N, B, H]`` and state
        ``h[N, B, H]``; ``weights`` (:meth:`hidden_weights`) may be computed once per sequence.
        The input shares enter the hidden convolutions' GEMMs as their bias (no separate add)."""
        w_gates, w_cand = self.hidden_weights() if weights is None else weights
        r, u = torch.sigmoid(self.conv(h, graph, w_gates, x_gates)).chunk(2, dim=-1)
        c = torch.tanh(self.conv(r * h, graph, w_cand, x_cand))
        return torch.lerp(c, h, u)

    def _split(self, x_part: Tensor) -> tuple[Tensor, Tensor]:
        return x_part.split([2 * self.hidden_size, self.hidden_size], dim=-1)

    def step(self, x: Tensor, h: Tensor, graph: nn.Module) -> Tensor:
        """One step from the input ``x[N, B, C]`` itself (decoders fed their own output)."""
        return self(*self._split(self.input_part(x, graph)), h, graph)

    def scan(self, x: Tensor, graph: nn.Module, h: Tensor | None = None) -> Tensor:
        """Run over ``x[N, T, B, C]`` from ``h`` (zeros by default); returns states ``[N, T, B, H]``."""
        if h is None:
            h = x.new_zeros(x.size(0), x.size(2), self.hidden_size)
        weights = self.hidden_weights()
        states = []
        # unbind, not slicing: a slice's backward zero-fills the whole sequence at every step.
        for x_part in self.input_part(x, graph).unbind(1):
            h = self(*self._split(x_part), h, graph, weights)
            states.append(h)
        return torch.stack(states, dim=1)
