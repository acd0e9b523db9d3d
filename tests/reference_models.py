"""Per-sample reference forwards for the batched models, used only by tests.

Each function takes a built module and ONE sample, loops over time with dense matrices built
here from the edge list (not by the library), and reads the module's own parameters: a batched
forward must equal these run sample by sample. No batching tricks, no merged weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pgti_core.models import A3TGCN, DCRNN, TGCN, DCGRUCell, DCRNNPaper, DiffusionConv


def dense_adjacency(edge_index, edge_weight, num_nodes: int, dtype=torch.float64) -> Tensor:
    """``A[i, j]`` = summed weight of edges ``i -> j``."""
    ei = torch.as_tensor(edge_index, dtype=torch.long)
    adj = torch.zeros(num_nodes, num_nodes, dtype=dtype)
    adj.index_put_((ei[0], ei[1]), torch.as_tensor(edge_weight, dtype=dtype), accumulate=True)
    return adj


def _row_stochastic(m: Tensor) -> Tensor:
    deg = m.sum(1, keepdim=True)
    return torch.where(deg > 0, m / torch.where(deg > 0, deg, 1.0), 0.0)


def dense_supports(edge_index, edge_weight, num_nodes: int) -> list[Tensor]:
    """``[D_out^-1 A, D_in^-1 A^T]``, dense float64."""
    adj = dense_adjacency(edge_index, edge_weight, num_nodes)
    return [_row_stochastic(adj), _row_stochastic(adj.t())]


def dense_gcn(edge_index, edge_weight, num_nodes: int) -> Tensor:
    """``D^-1/2 (A^T + I) D^-1/2`` (row = target, in-degrees), dense float64; no self-loops assumed."""
    a_hat = dense_adjacency(edge_index, edge_weight, num_nodes).t() + torch.eye(num_nodes)
    d = a_hat.sum(1).rsqrt()
    return d[:, None] * a_hat * d[None, :]


def diffusion_conv(conv: DiffusionConv, x: Tensor, supports: list[Tensor]) -> Tensor:
    """``sum_{s,k} T_k(S_s) x W[s, k] + b`` for one sample ``x[N, C_in]``."""
    w = conv.weight.to(x.dtype)
    out = torch.zeros(x.size(0), conv.out_channels, dtype=x.dtype)
    if conv.bias is not None:
        out = out + conv.bias.to(x.dtype)
    for s, sup in enumerate(supports):
        x0, x1 = x, sup.to(x.dtype) @ x
        out = out + x0 @ w[s, 0]
        if conv.k >= 1:
            out = out + x1 @ w[s, 1]
        for k in range(2, conv.k + 1):
            x2 = 2 * sup.to(x.dtype) @ x1 - x0
            out = out + x2 @ w[s, k]
            x0, x1 = x1, x2
    return out


def dcgru_step(cell: DCGRUCell, x: Tensor, h: Tensor, supports: list[Tensor]) -> Tensor:
    """One DCGRU step for one sample: ``x[N, F]``, ``h[N, H]`` -> ``[N, H]``."""
    hs = cell.hidden_size
    gates = torch.sigmoid(diffusion_conv(cell.gates, torch.cat([x, h], -1), supports))
    r, u = gates[:, :hs], gates[:, hs:]
    c = torch.tanh(diffusion_conv(cell.candidate, torch.cat([x, r * h], -1), supports))
    return u * h + (1 - u) * c


def dcrnn_paper(model: DCRNNPaper, x: Tensor, supports: list[Tensor]) -> Tensor:
    """``x[lags, N, F]`` -> ``[horizon, N, F]``: the last ``horizon`` states of one cell."""
    h = torch.zeros(x.size(1), model.cell.hidden_size, dtype=x.dtype)
    states = []
    for t in range(x.size(0)):
        h = dcgru_step(model.cell, x[t], h, supports)
        states.append(h)
    return torch.stack(states[-model.horizon :])


def dcrnn(model: DCRNN, x: Tensor, supports: list[Tensor]) -> Tensor:
    """``x[lags, N, F]`` -> ``[horizon, N, 1]``: stacked encoder, then decoder fed its output."""
    n = x.size(1)
    hidden = [torch.zeros(n, c.hidden_size, dtype=x.dtype) for c in model.encoder]
    for t in range(x.size(0)):
        inp = x[t]
        for i, cell in enumerate(model.encoder):
            hidden[i] = dcgru_step(cell, inp, hidden[i], supports)
            inp = hidden[i]
    out = torch.zeros(n, 1, dtype=x.dtype)
    preds = []
    for _ in range(model.horizon):
        inp = out
        for i, cell in enumerate(model.decoder):
            hidden[i] = dcgru_step(cell, inp, hidden[i], supports)
            inp = hidden[i]
        out = torch.nn.functional.linear(inp, model.projection.weight, model.projection.bias)
        preds.append(out)
    return torch.stack(preds)


def tgcn_states(model: TGCN | A3TGCN, x: Tensor, a_hat: Tensor) -> list[Tensor]:
    """The GCN-GRU states ``[N, H]`` after each step of one sample ``x[lags, N, F]``."""
    cell, lin = model.cell, torch.nn.functional.linear
    hs = cell.hidden_size
    h = torch.zeros(x.size(1), hs, dtype=x.dtype)
    states = []
    for t in range(x.size(0)):
        gates = torch.sigmoid(
            lin(a_hat @ torch.cat([x[t], h], -1), cell.gates.weight, cell.gates.bias)
        )
        r, u = gates[:, :hs], gates[:, hs:]
        xc = a_hat @ torch.cat([x[t], r * h], -1)
        c = torch.tanh(lin(xc, cell.candidate.weight, cell.candidate.bias))
        h = u * h + (1 - u) * c
        states.append(h)
    return states


def tgcn(model: TGCN, x: Tensor, a_hat: Tensor) -> Tensor:
    """``x[lags, N, F]`` -> ``[horizon, N, 1]``: GCN-GRU over the steps, linear head."""
    h = tgcn_states(model, x, a_hat)[-1]
    return torch.nn.functional.linear(h, model.head.weight, model.head.bias).t().unsqueeze(-1)


def a3tgcn(model: A3TGCN, x: Tensor, a_hat: Tensor) -> Tensor:
    """``x[lags, N, F]`` -> ``[horizon, N, 1]``: softmax-attention sum of the states, ReLU, head."""
    probs = torch.softmax(model.attention.to(x.dtype), 0)
    context = sum(p * h for p, h in zip(probs, tgcn_states(model, x, a_hat), strict=True))
    out = torch.nn.functional.linear(torch.relu(context), model.head.weight, model.head.bias)
    return out.t().unsqueeze(-1)


def per_sample(model: torch.nn.Module, x: Tensor, edge_index, edge_weight) -> Tensor:
    """Run the matching reference on each sample of ``x[B, lags, N, F]`` and stack the outputs."""
    n = x.size(2)
    if isinstance(model, TGCN | A3TGCN):
        a_hat = dense_gcn(edge_index, edge_weight, n).to(x.dtype)
        fn = tgcn if isinstance(model, TGCN) else a3tgcn
        return torch.stack([fn(model, xs, a_hat) for xs in x])
    supports = [s.to(x.dtype) for s in dense_supports(edge_index, edge_weight, n)]
    fn = dcrnn_paper if isinstance(model, DCRNNPaper) else dcrnn
    return torch.stack([fn(model, xs, supports) for xs in x])
