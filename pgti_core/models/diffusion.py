"""Batched diffusion convolution (Li et al., "Diffusion Convolutional Recurrent Neural Network",
ICLR 2018) and the dual random-walk supports it diffuses over.

Convention (DCRNN's DCGRU): for each support ``S`` the terms follow the Chebyshev-like recursion
``T_0 = X``, ``T_1 = S X``, ``T_k = 2 S T_{k-1} - T_{k-2}``, restarted from ``X`` for every support
(the reference code carries ``x0`` over from one support to the next; we do not copy that slip).
The output is ``sum_{s, k} T_k(S_s) X W[s, k] + b`` with ``W`` shaped ``[S, k + 1, C_in, C_out]``
like PyTorch Geometric Temporal's ``DConv`` (whose ``K`` is our ``k + 1``): the ``k = 0`` term has
one weight per support, so the PGT-I paper's cell has PGT's parameter count.

Supports (``filter_type="dual_random_walk"``): ``D_out^-1 A`` and ``D_in^-1 A^T`` with
``A[i, j]`` the weight of edge ``i -> j``; rows sum to 1 (rows of nodes without edges are 0).
The reference code applies their transposes; the paper's formula, which we follow, does not.

``diffusion="pgt"`` reproduces PyTorch Geometric Temporal 0.56's ``BatchedDConv`` instead (what
published PGT and PGT-I numbers ran), with its three differences from the paper: (1) messages drop
the edge weights, only the weighted degrees normalize them (:func:`pgt_supports`); (2) the reverse
direction's in-degree normalization is indexed by the *original* edge list's sources while its
edges are the argsorted transpose, so the operator depends on the order of the edge list; (3) for
``k >= 3`` the recursion subtracts ``X`` every time, ``T_k = 2 S T_{k-1} - X`` (its second-to-last
term never advances; identical to the paper's for PGT's default ``K = 3``, i.e. ``k = 2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pgti_core.models.propagation import EdgeArray, GraphOperator, channel_mix, edge_tensors


def _row_normalize(adj: Tensor) -> Tensor:
    idx, val = adj.indices(), adj.values()
    deg = torch.zeros(adj.size(0), dtype=val.dtype, device=val.device).index_add_(0, idx[0], val)
    inv = torch.where(deg > 0, 1.0 / deg, torch.zeros_like(deg))
    return torch.sparse_coo_tensor(
        idx, val * inv[idx[0]], adj.shape, check_invariants=True
    ).coalesce()


def dual_random_walk_supports(
    edge_index: EdgeArray,
    edge_weight: EdgeArray | None,
    num_nodes: int,
) -> tuple[Tensor, Tensor]:
    """Forward ``D_out^-1 A`` and reverse ``D_in^-1 A^T`` random-walk matrices, sparse COO float32.

    Args:
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target) node ids.
        edge_weight (Tensor | ndarray | None): ``[E]`` non-negative weights (``None``: all 1);
            duplicate edges are summed.
        num_nodes (int): N.
    """
    ei, ew = edge_tensors(edge_index, edge_weight, num_nodes)
    if ew.numel() and float(ew.min()) < 0:
        raise ValueError("edge_weight: random-walk supports need non-negative weights")
    adj = torch.sparse_coo_tensor(ei, ew, (num_nodes, num_nodes), check_invariants=True).coalesce()
    return _row_normalize(adj), _row_normalize(adj.t().coalesce())


DIFFUSIONS: tuple[str, ...] = ("paper", "pgt")
"""Diffusion operators: the paper's (default) and PGT 0.56's ``BatchedDConv``."""


def check_diffusion(diffusion: str) -> None:
    """Raise ``ValueError`` unless ``diffusion`` is one of :data:`DIFFUSIONS`."""
    if diffusion not in DIFFUSIONS:
        raise ValueError(f"diffusion: unknown {diffusion!r}; choose from {', '.join(DIFFUSIONS)}")


def pgt_supports(
    edge_index: EdgeArray, edge_weight: EdgeArray | None, num_nodes: int
) -> tuple[Tensor, Tensor]:
    """PGT 0.56 ``BatchedDConv``'s two operators as sparse COO ``[N, N]`` (row = receiving node).

    With ``d_out``, ``d_in`` the weighted degrees of ``A`` and edges ``e = (s_e -> t_e)`` in the
    given order: forward ``M_o[t_e, s_e] = 1 / d_out[s_e]``; reverse: the edges of ``A^T`` in
    row-major order, ``r = (t_e' -> s_e')`` for ``e'`` = the r-th edge sorted by ``(t, s)``, each
    scaled by ``1 / d_in[s_r]`` (the *unsorted* list's r-th source), ``M_i[s_e', t_e'] += that``.

    Args:
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target), distinct edges.
        edge_weight (Tensor | ndarray | None): ``[E]`` non-zero weights (``None``: all 1).
        num_nodes (int): N.
    """
    ei, ew = edge_tensors(edge_index, edge_weight, num_nodes)
    src, dst = ei
    key = src * num_nodes + dst
    if key.unique().numel() != key.numel() or bool((ew == 0).any()):
        raise ValueError(
            "edge_index: --diffusion pgt needs distinct edges with non-zero weights (PGT densifies "
            "the graph, and its edge lists then differ in length)"
        )
    deg_out = torch.zeros(num_nodes).index_add_(0, src, ew)
    deg_in = torch.zeros(num_nodes).index_add_(0, dst, ew)
    if bool((deg_in[src] == 0).any()):
        raise ValueError(
            "edge_index: --diffusion pgt divides by the in-degree of every edge's source, and some "
            "source has no in-edges here (PGT's output would be inf/nan); use --diffusion paper"
        )
    order = torch.argsort(dst * num_nodes + src)  # A^T row-major: by (target, source)
    fwd = torch.sparse_coo_tensor(
        torch.stack([dst, src]), 1.0 / deg_out[src], (num_nodes,) * 2, check_invariants=True
    )
    rev = torch.sparse_coo_tensor(
        torch.stack([src[order], dst[order]]),
        1.0 / deg_in[src],
        (num_nodes,) * 2,
        check_invariants=True,
    )
    return fwd.coalesce(), rev.coalesce()


def diffusion_supports(
    edge_index: EdgeArray, edge_weight: EdgeArray | None, num_nodes: int, diffusion: str = "paper"
) -> tuple[Tensor, Tensor]:
    """The two supports of ``diffusion`` (:func:`dual_random_walk_supports` or :func:`pgt_supports`)."""
    check_diffusion(diffusion)
    build = pgt_supports if diffusion == "pgt" else dual_random_walk_supports
    return build(edge_index, edge_weight, num_nodes)


def diffusion_terms(
    x: Tensor, supports: Sequence[GraphOperator], k: int, anchored: bool = False
) -> Tensor:
    """Stack ``X`` and ``T_1..T_k(S) X`` of every support: node-major ``x[N, ..., C]`` ->
    ``[N, ..., 1 + len(supports) * k, C]``, each hop one matrix product for the whole batch.

    ``anchored``: PGT's recursion ``T_k = 2 S T_{k-1} - X`` instead of ``- T_{k-2}``."""
    x = x.contiguous()  # once here, not in every product
    terms = [x]
    for op in supports if k > 0 else ():
        prev, cur = x, op(x)
        terms.append(cur)
        for _ in range(2, k + 1):
            prev, cur = (x if anchored else cur), op.recur(cur, prev)
            terms.append(cur)
    return torch.stack(terms, dim=-2)


class DiffusionConv(nn.Module):
    """Diffusion convolution (Li et al., ICLR 2018) of a batch ``[B, N, C_in]`` in one pass per hop.

    Args:
        in_channels (int): C_in.
        out_channels (int): C_out.
        k (int, default 2): diffusion steps per support (Li et al.'s ``max_diffusion_step``).
        num_supports (int, default 2): supports it expects (2 for the dual random walk).
        bias (bool, default True): add a learned bias.
        diffusion (str, default ``"paper"``): ``"pgt"`` for PGT's recursion (pair it with
            :func:`pgt_supports`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 2,
        num_supports: int = 2,
        bias: bool = True,
        diffusion: str = "paper",
    ) -> None:
        super().__init__()
        if k < 0:
            raise ValueError(f"k: diffusion steps must be >= 0, got {k}")
        check_diffusion(diffusion)
        self.in_channels, self.out_channels, self.k = in_channels, out_channels, k
        self.anchored = diffusion == "pgt"
        self.num_supports = num_supports
        self.weight = nn.Parameter(torch.empty(num_supports, k + 1, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal weights over the stacked terms (as DCRNN), zero bias."""
        nn.init.xavier_normal_(self.weight.view(-1, self.out_channels))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def weight_matrix(self, lo: int = 0, hi: int | None = None) -> Tensor:
        """Weights of input channels ``[lo, hi)`` as one ``[(1 + S k) c, C_out]`` matrix matching
        the flattened :func:`diffusion_terms` (the per-support ``k = 0`` weights are summed: they
        all multiply X)."""
        w = self.weight[:, :, lo:hi]
        root = w[:, 0].sum(0, keepdim=True)
        return torch.cat([root, w[:, 1:].flatten(0, 1)]).flatten(0, 1)

    def forward(self, x: Tensor, supports: Sequence[GraphOperator]) -> Tensor:
        """``x[B, N, C_in]`` -> ``[B, N, C_out]``."""
        if x.dim() != 3 or x.size(-1) != self.in_channels:
            raise ValueError(f"x: expected [B, N, {self.in_channels}], got {tuple(x.shape)}")
        if len(supports) != self.num_supports:
            raise ValueError(f"supports: expected {self.num_supports}, got {len(supports)}")
        terms = diffusion_terms(x.transpose(0, 1), supports, self.k, self.anchored)
        return channel_mix(terms.flatten(-2), self.weight_matrix(), self.bias).transpose(0, 1)
