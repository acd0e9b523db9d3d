"""The GRU update of a graph recurrent cell whose convolution splits into shares (DCGRU, Li 2018).

The cell replaces the GRU's matmuls with a linear graph convolution of ``[x, h]``. Being linear, the
convolution splits into an input share and a hidden share: one convolution of ``x`` gives the input
share of the gates and the candidate together, and it enters the hidden convolutions' GEMMs as
their bias. The shares are computed step by step, not for a whole sequence in one pass: the
sequence's one product of ``[C T N, B]`` rows made torch copy a 10 MB result through a transposed
temporary (11 ms of a 57 ms ``dcrnn-paper`` step at N = 325, B = 64). Tensors are channel-first
``[C, ..., N, B]`` throughout (see :mod:`pgti_core.models.propagation`): no step changes layout,
and splitting gates or shares off a tensor is a view of whole blocks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from pgti_core.models.gru_gates import blend, reset_and_update

Weights = tuple[tuple[Tensor, Tensor], ...]
"""Per-sequence mixing matrices of a cell's :meth:`GraphGRUCell.step` (empty: made per step)."""


def check_input(x: Tensor, num_nodes: int, num_features: int) -> None:
    """Raise ``ValueError`` unless a model input ``x`` is ``[B, lags >= 1, num_nodes, num_features]``."""
    if x.dim() != 4 or x.size(2) != num_nodes or x.size(3) != num_features or x.size(1) < 1:
        raise ValueError(
            f"x: expected [B, lags >= 1, {num_nodes}, {num_features}], got {tuple(x.shape)}"
        )


class GraphGRUCell(nn.Module):
    """GRU cell over channel-first graph signals; subclasses supply the graph convolution.

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
        """Graph convolution of ``x[C, ..., N, B]`` mixed by ``weight``: -> ``[O, ..., N, B]``."""
        raise NotImplementedError

    def input_weights(self) -> tuple[Tensor, Tensor]:
        """Mixing matrix and bias of the input share of gates and candidate (``3H`` outputs)."""
        raise NotImplementedError

    def hidden_weights(self) -> tuple[Tensor, Tensor]:
        """Mixing matrices of the hidden share of the gates (``2H`` outputs) and candidate (``H``)."""
        raise NotImplementedError

    def forward(
        self,
        x_gates: Tensor,
        x_cand: Tensor,
        h: Tensor,
        graph: nn.Module,
        weights: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """One step from the input shares ``x_gates[2H, N, B]``, ``x_cand[H, N, B]`` and state
        ``h[H, N, B]``; ``weights`` (:meth:`hidden_weights`) may be computed once per sequence.
        The input shares enter the hidden convolutions' GEMMs as their bias (no separate add)."""
        w_gates, w_cand = self.hidden_weights() if weights is None else weights
        rh, u = reset_and_update(self.conv(h, graph, w_gates, x_gates), h)
        return blend(self.conv(rh, graph, w_cand, x_cand), h, u)

    def _split(self, x_part: Tensor) -> tuple[Tensor, Tensor]:
        return x_part.split([2 * self.hidden_size, self.hidden_size])

    def step(self, x: Tensor, h: Tensor, graph: nn.Module, weights: Weights = ()) -> Tensor:
        """One step from the input ``x[C, N, B]`` and state ``h[H, N, B]``; ``weights``
        (:meth:`input_weights`, :meth:`hidden_weights`) may be merged once per sequence."""
        inputs, hidden = weights or (self.input_weights(), self.hidden_weights())
        return self(*self._split(self.conv(x, graph, *inputs)), h, graph, hidden)

    def first_step(self, x: Tensor, graph: nn.Module, inputs: tuple[Tensor, Tensor]) -> Tensor:
        """The step from the zero state, from ``x[C, N, B]`` and :meth:`input_weights` alone.

        The hidden convolutions of zeros vanish, ``r`` multiplies zeros and ``h' = (1 - u) c``, so
        only the input share of ``u`` and ``c`` is computed: a twelfth of a 12-step sequence's
        hidden GEMMs and sparse products is skipped, with the same states up to rounding."""
        weight, bias = inputs
        h = self.hidden_size
        u, c = self.conv(x, graph, weight[:, h:], bias[h:]).split(h)
        return blend(c, c.new_zeros(()), torch.sigmoid(u))

    def states(self, x: Tensor, graph: nn.Module, h: Tensor | None = None) -> Iterator[Tensor]:
        """The states ``[H, N, B]`` after each step of ``x[C, T, N, B]``, from ``h`` (zeros:
        the first step is :meth:`first_step`)."""
        weights = self.input_weights(), self.hidden_weights()
        # unbind, not slicing: a slice's backward zero-fills the whole sequence at every step.
        for x_t in x.unbind(1):
            h = (
                self.first_step(x_t, graph, weights[0])
                if h is None
                else self.step(x_t, h, graph, weights)
            )
            yield h

    def scan(self, x: Tensor, graph: nn.Module, h: Tensor | None = None) -> Tensor:
        """Run over ``x[C, T, N, B]`` from ``h`` (zeros by default); returns states ``[H, T, N, B]``."""
        return torch.stack(list(self.states(x, graph, h)), dim=1)
