"""The GRU's elementwise arithmetic, ``(r h, u) = (sigmoid(g_r) h, sigmoid(g_u))`` and
``h' = u h + (1 - u) tanh(z)``, as two autograd Functions with hand-written backwards.

Plain autograd spends a full-size pass on each intermediate: the backward of ``sigmoid(g).chunk(2)``
concatenates the two gate gradients into a fresh ``[2H, N, B]`` copy, and ``lerp``'s backward
computes ``1 - u`` anew. These backwards write each gradient once, straight into its place. On CPU
the candidate's ``tanh`` is computed as ``2 sigmoid(2 z) - 1``: torch's vectorized ``tanh`` (AVX2,
one thread) took 4.9-5.9 ms on a ``[64, 325, 64]`` tensor, where this took 2.8-3.6 ms. Its error
is absolute (1.8e-7 at most in float32 over [-30, 30]; relatively larger near 0).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import FunctionCtx, once_differentiable

sigmoid_backward = torch.ops.aten.sigmoid_backward
tanh_backward = torch.ops.aten.tanh_backward


def tanh(z: Tensor, inplace: bool = False) -> Tensor:
    """``tanh(z)``, on CPU as ``2 sigmoid(2 z) - 1`` (faster there), in place on one fresh tensor,
    or on ``z`` itself if ``inplace``."""
    if not z.is_cpu:
        return z.tanh_() if inplace else torch.tanh(z)
    return (z.mul_(2) if inplace else z.mul(2)).sigmoid_().mul_(2).sub_(1)


class _ResetUpdate(Function):
    """``gates[2H, ...], h[H, ...] -> (sigmoid(gates[:H]) h, sigmoid(gates[H:]))``."""

    @staticmethod
    def forward(ctx: FunctionCtx, gates: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        s = torch.sigmoid(gates)
        r, u = s.chunk(2)
        ctx.save_for_backward(s, h)
        return r * h, u

    @staticmethod
    @once_differentiable  # a hand-written gradient, not itself differentiated
    def backward(ctx: FunctionCtx, grad_rh: Tensor | None, grad_u: Tensor | None):
        s, h = ctx.saved_tensors
        r, u = s.chunk(2)
        grad_gates = torch.empty_like(s)
        grad_r, grad_gu = grad_gates.chunk(2)
        grad_h = None
        if grad_rh is None:
            grad_r.zero_()
        else:
            sigmoid_backward.grad_input(grad_rh * h, r, grad_input=grad_r)
            grad_h = grad_rh * r if ctx.needs_input_grad[1] else None
        if grad_u is None:
            grad_gu.zero_()
        else:
            sigmoid_backward.grad_input(grad_u, u, grad_input=grad_gu)
        return grad_gates, grad_h


class _Blend(Function):
    """``z, h, u -> u h + (1 - u) tanh(z)`` (the new state)."""

    @staticmethod
    def forward(ctx: FunctionCtx, z: Tensor, h: Tensor, u: Tensor) -> Tensor:
        c = tanh(z)
        ctx.save_for_backward(c, h, u)
        return torch.lerp(c, h, u)

    @staticmethod
    @once_differentiable  # a hand-written gradient, not itself differentiated
    def backward(ctx: FunctionCtx, grad: Tensor):
        c, h, u = ctx.saved_tensors
        grad_h = grad * u
        grad_u = torch.sub(h, c).mul_(grad) if ctx.needs_input_grad[2] else None
        grad_z = None
        if ctx.needs_input_grad[0]:  # grad (1 - u) (1 - c^2), the first factor from grad_h
            grad_z = tanh_backward(grad.sub(grad_h), c)
        return grad_z, (grad_h if ctx.needs_input_grad[1] else None), grad_u


def reset_and_update(gates: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """The reset-gated state ``sigmoid(g_r) h`` and the update gate ``sigmoid(g_u)`` from the
    gates' pre-activations ``gates[2H, ...]`` (reset first) and the state ``h[H, ...]``."""
    return _ResetUpdate.apply(gates, h)


def blend(z: Tensor, h: Tensor, u: Tensor) -> Tensor:
    """The new state ``u h + (1 - u) tanh(z)`` from the candidate's pre-activation ``z``."""
    return _Blend.apply(z, h, u)
