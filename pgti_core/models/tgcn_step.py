"""One T-GCN step (Zhao et al. 2019) as a single autograd Function with a hand-written backward.

``P = A [x; h]``, ``s = sigmoid(W_g P + b_g)`` split into ``r, u``, ``Q = A [x; r h]``,
``c = tanh(W_c Q + b_c)`` and ``h' = u h + (1 - u) c``, channel-first ``[C, N, B]``.

Written out, the step makes fewer full-size passes and allocations than autograd over the same
operations: the propagated state is written straight into the rows of ``P`` and ``Q`` below the
input's (no concatenation), the gate sigmoid runs in place on its GEMM's output, the gradient of
``h`` is accumulated in place (the adjoint propagation adds into it), and the backward's GEMMs
produce only the state's rows of ``dP`` and ``dQ`` unless the input itself needs a gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import FunctionCtx, once_differentiable

from pgti_core.models.gru_gates import sigmoid_backward, tanh, tanh_backward
from pgti_core.models.propagation import GraphOperator


def _propagated(graph: GraphOperator, ax: Tensor, state: Tensor) -> Tensor:
    """``[A x; A state]`` as one ``[F + H, N, B]`` buffer, ``A state`` written into its rows."""
    f = ax.size(0)
    buf = state.new_empty(f + state.size(0), *state.shape[1:])
    buf[:f] = ax
    graph.product(state, buf[f:])
    return buf


class _TGCNStep(Function):
    """``ax = A x [F, N, B], h [H, N, B], gate and candidate weights -> h'``."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        ax: Tensor,
        h: Tensor,
        w_gates: Tensor,
        b_gates: Tensor,
        w_cand: Tensor,
        b_cand: Tensor,
        graph: GraphOperator,
    ) -> Tensor:
        hid = h.size(0)
        p = _propagated(graph, ax, h)
        s = torch.addmm(b_gates.unsqueeze(1), w_gates, p.view(p.size(0), -1)).sigmoid_()
        s = s.view(2 * hid, *h.shape[1:])
        r, u = s.chunk(2)
        q = _propagated(graph, ax, r * h)
        z = torch.addmm(b_cand.unsqueeze(1), w_cand, q.view(q.size(0), -1)).view_as(h)
        c = tanh(z, inplace=True)
        ctx.graph = graph
        ctx.save_for_backward(h, w_gates, w_cand, p, s, q, c)
        return torch.lerp(c, h, u)

    @staticmethod
    @once_differentiable  # a hand-written gradient, not itself differentiated
    def backward(ctx: FunctionCtx, grad: Tensor):
        h, w_gates, w_cand, p, s, q, c = ctx.saved_tensors
        graph, hid, f = ctx.graph, h.size(0), p.size(0) - h.size(0)
        need_ax, need_h, need_wg, need_bg, need_wc, need_bc = ctx.needs_input_grad[:6]
        r, u = s.chunk(2)
        grad = grad.contiguous()
        flat = grad.size(0), -1  # channel-first [C, N B] views

        # h' = c + u (h - c): the candidate's pre-activation, the update gate, h directly.
        grad_h = grad * u
        grad_z = torch.sub(grad, grad_h)
        tanh_backward.grad_input(grad_z, c, grad_input=grad_z)
        grad_s = torch.empty_like(s)
        grad_r, grad_u = grad_s.chunk(2)
        torch.sub(h, c, out=grad_u).mul_(grad)
        sigmoid_backward.grad_input(grad_u, u, grad_input=grad_u)

        # z = W_c [A x; A (r h)] + b_c.
        gz = grad_z.view(flat)
        w_cand_grad = gz @ q.view(q.size(0), -1).t() if need_wc else None
        b_cand_grad = gz.sum(1) if need_bc else None
        rows = slice(0 if need_ax else f, None)  # the input's rows only if it needs a gradient
        grad_q = (w_cand[:, rows].t() @ gz).view(-1, *h.shape[1:])
        grad_rh = graph.product(grad_q[-hid:], h.new_empty(h.shape), transpose=True)
        torch.mul(grad_rh, h, out=grad_r)
        sigmoid_backward.grad_input(grad_r, r, grad_input=grad_r)
        grad_h.addcmul_(grad_rh, r)

        # s = sigmoid(W_g [A x; A h] + b_g).
        gs = grad_s.view(2 * hid, -1)
        w_gates_grad = gs @ p.view(p.size(0), -1).t() if need_wg else None
        b_gates_grad = gs.sum(1) if need_bg else None
        grad_p = (w_gates[:, rows].t() @ gs).view(-1, *h.shape[1:])
        graph.product(grad_p[-hid:], grad_h, transpose=True, accumulate=True)
        grad_ax = grad_q[:f] + grad_p[:f] if need_ax else None
        return (
            grad_ax, grad_h if need_h else None,
            w_gates_grad, b_gates_grad, w_cand_grad, b_cand_grad, None,
        )  # fmt: skip


def tgcn_step(
    ax: Tensor,
    h: Tensor,
    gates: tuple[Tensor, Tensor],
    candidate: tuple[Tensor, Tensor],
    graph: GraphOperator,
) -> Tensor:
    """The state after one T-GCN step from the propagated input ``ax = A x[F, N, B]`` and the
    state ``h[H, N, B]``; ``gates`` and ``candidate`` are ``(weight [O, F + H], bias [O])`` as
    ``nn.Linear`` holds them (``O = 2H`` reset first, and ``H``)."""
    return _TGCNStep.apply(ax, h, *gates, *candidate, graph)
