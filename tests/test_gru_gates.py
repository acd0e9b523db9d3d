"""The GRU's hand-written gate Functions equal plain autograd, and the zero-state step equals the
general step from zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgti_core.models import DCGRUCell, GraphOperator, TGCNCell, diffusion_operator, gcn_matrix
from pgti_core.models.graph_gru import check_input
from pgti_core.models.gru_gates import blend, reset_and_update, tanh

H, N, B = 4, 6, 3


def rand(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()


def plain_reset_and_update(gates: torch.Tensor, h: torch.Tensor):
    r, u = torch.sigmoid(gates).chunk(2)
    return r * h, u


def plain_blend(z: torch.Tensor, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return u * h + (1 - u) * torch.tanh(z)


def test_gate_functions_pass_gradcheck():
    gates, h = rand(2 * H, N, B, seed=0), rand(H, N, B, seed=1)
    assert torch.autograd.gradcheck(reset_and_update, (gates, h))
    z, u = rand(H, N, B, seed=2), torch.rand(H, N, B, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(blend, (z, h, u))


@pytest.mark.parametrize("used", ["rh", "u", "both"])
def test_reset_and_update_equals_plain_autograd_with_unused_outputs(used):
    """An output that the loss does not read reaches backward as ``None``: its gate's gradient
    is zero, as plain autograd gives."""
    gates, h = rand(2 * H, N, B, seed=3), rand(H, N, B, seed=4)
    weight = torch.randn(H, N, B, dtype=torch.float64)
    grads = []
    for fn in (reset_and_update, plain_reset_and_update):
        rh, u = fn(gates, h)
        parts = {"rh": [rh], "u": [u], "both": [rh, u]}[used]
        loss = sum((p * weight).sum() for p in parts)
        grads.append(torch.autograd.grad(loss, (gates, h), allow_unused=True))
    for got, want in zip(*grads, strict=True):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want)


def test_blend_equals_plain_autograd_without_every_input_grad():
    z, h = rand(H, N, B, seed=5), rand(H, N, B, seed=6).detach()
    u = torch.rand(H, N, B, dtype=torch.float64)
    weight = torch.randn(H, N, B, dtype=torch.float64)
    got = torch.autograd.grad((blend(z, h, u) * weight).sum(), z)
    want = torch.autograd.grad((plain_blend(z, h, u) * weight).sum(), z)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(blend(z, h, u), plain_blend(z, h, u))


def test_tanh_is_torch_tanh_to_float32_rounding_and_saturates():
    z = torch.cat([torch.linspace(-30, 30, 100_001), torch.tensor([-1e4, 1e4, 0.0])])
    got = tanh(z)
    torch.testing.assert_close(got, torch.tanh(z), atol=5e-7, rtol=0)
    assert torch.isfinite(got).all() and got.abs().max() <= 1


@pytest.fixture(scope="module")
def edges() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pairs = [(i, j) for i in range(N) for j in range(N) if i != j and rng.random() < 0.4]
    ei = np.array(pairs).T
    return ei, rng.random(ei.shape[1]) + 0.1


@pytest.mark.parametrize("cell_name", ["dcgru", "tgcn"])
def test_first_step_equals_step_from_zero_state(edges, cell_name):
    torch.manual_seed(0)
    if cell_name == "dcgru":
        cell, graph = DCGRUCell(2, H, k=2), diffusion_operator(*edges, N, 2, dense_threshold=1.1)
    else:
        cell, graph = TGCNCell(2, H), GraphOperator(gcn_matrix(*edges, N), dense_threshold=1.1)
    cell, graph = cell.double(), graph.double()
    x = torch.randn(2, N, B, dtype=torch.float64)
    want = cell.step(x, torch.zeros(H, N, B, dtype=torch.float64), graph)
    got = cell.first_step(x, graph, cell.input_weights())
    torch.testing.assert_close(got, want)
    states = list(cell.states(x.unsqueeze(1).expand(-1, 3, -1, -1), graph))
    assert len(states) == 3
    torch.testing.assert_close(states[0], want)


def test_model_input_without_lags_is_refused():
    with pytest.raises(ValueError, match="lags >= 1"):
        check_input(torch.zeros(2, 0, N, 2), N, 2)


def test_double_backward_is_refused_not_wrong():
    gates, h = rand(2 * H, N, B, seed=7), rand(H, N, B, seed=8)
    rh, _ = reset_and_update(gates, h)
    (grad,) = torch.autograd.grad(rh.sum(), gates, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        grad.sum().backward()
