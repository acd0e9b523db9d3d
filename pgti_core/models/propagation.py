"""A fixed graph matrix applied to a whole batch at once, without replicating the edges per sample.

Models keep signals node-major, ``[N, ..., B, C]`` (nodes first, batch, channels last), viewed as
one ``[N, B C]`` matrix: one matrix product propagates every sample and channel, in O(E + N B C)
memory, not O(B E) as when the edge index is repeated per sample (PyTorch Geometric Temporal's
batched models). Channels last make the same tensor a ``[N B, C]`` matrix too, so mixing
channels is one GEMM on a view (:func:`channel_mix`): the recurrence never changes layout.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

EdgeArray = Tensor | np.ndarray
"""Edge lists arrive as tensors or numpy arrays (a ``Series`` holds numpy)."""

DENSE_THRESHOLD = 0.15
"""Density (nnz / N^2) above which a dense matmul beats CSR on CPU (measured at N = 325)."""


def edge_tensors(
    edge_index: EdgeArray, edge_weight: EdgeArray | None, num_nodes: int
) -> tuple[Tensor, Tensor]:
    """Checked ``(edge_index int64 [2, E], edge_weight float32 [E])``; ``None`` weights are 1.

    Args:
        edge_index (Tensor | ndarray): ``[2, E]`` (source, target) node ids in ``[0, num_nodes)``.
        edge_weight (Tensor | ndarray | None): ``[E]`` weights.
        num_nodes (int): N.
    """
    ei = torch.as_tensor(edge_index, dtype=torch.long)
    if ei.dim() != 2 or ei.size(0) != 2:
        raise ValueError(f"edge_index: expected shape [2, E], got {tuple(ei.shape)}")
    if num_nodes < 1:
        raise ValueError(f"num_nodes: must be >= 1, got {num_nodes}")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= num_nodes):
        raise ValueError(f"edge_index: node ids must lie in [0, {num_nodes})")
    if edge_weight is None:
        return ei, torch.ones(ei.size(1), device=ei.device)
    ew = torch.as_tensor(edge_weight, dtype=torch.float32, device=ei.device)
    if ew.shape != (ei.size(1),):
        raise ValueError(f"edge_weight: expected shape [{ei.size(1)}], got {tuple(ew.shape)}")
    return ei, ew


def channel_mix(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Per-node linear map of channels, one GEMM: ``x[..., C]``, ``weight[C, O]`` -> ``[..., O]``.

    ``bias`` is ``[O]`` or a whole ``[..., O]`` tensor to add (a precomputed input share), fused
    into the GEMM."""
    flat = x.reshape(-1, x.size(-1))
    if bias is None:
        out = flat @ weight
    else:
        out = torch.addmm(
            bias.reshape(-1, weight.size(1)) if bias.dim() > 1 else bias, flat, weight
        )
    return out.view(*x.shape[:-1], weight.size(1))


class _CsrMatmul(torch.autograd.Function):
    """``A @ x`` or ``2 A @ x - prev`` for CSR ``A``; the backward uses a stored CSR ``A^T``.

    Autograd through ``torch.sparse.mm`` builds the transpose on every backward (~30x slower);
    re-checked on torch 2.13: plain ``csr @ x`` with autograd took 3.4 ms forward + backward
    against this Function's 1.8 ms (N = 325, E = 2209, 512 columns, one thread, interleaved).
    """

    @staticmethod
    def forward(ctx, x: Tensor, prev: Tensor | None, mat: Tensor, mat_t: Tensor) -> Tensor:
        ctx.mat_t, ctx.recur = mat_t, prev is not None
        return mat @ x if prev is None else torch.addmm(prev, mat, x, beta=-1, alpha=2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad_x = ctx.mat_t @ grad if ctx.needs_input_grad[0] else None
        if not ctx.recur:
            return grad_x, None, None, None
        grad_prev = -grad if ctx.needs_input_grad[1] else None
        return None if grad_x is None else grad_x.mul_(2), grad_prev, None, None


class GraphOperator(nn.Module):
    """A constant ``[N, N]`` matrix ``A`` applied to node-major tensors: ``y[i] = sum_j A[i, j] x[j]``.

    Stored dense when its density is at least ``dense_threshold`` (a dense matmul is then faster),
    otherwise as CSR together with its transpose (for the backward). The storage is
    non-persistent buffers, so ``.to()``/``.double()`` move it and checkpoints hold only weights.

    Args:
        matrix (Tensor): ``[N, N]`` sparse COO or dense matrix.
        dense_threshold (float, default ``DENSE_THRESHOLD``): density at which to store it dense.
    """

    def __init__(self, matrix: Tensor, dense_threshold: float = DENSE_THRESHOLD) -> None:
        super().__init__()
        if matrix.dim() != 2 or matrix.size(0) != matrix.size(1):
            raise ValueError(f"matrix: expected a square [N, N] matrix, got {tuple(matrix.shape)}")
        n = matrix.size(0)
        sparse = (matrix if matrix.is_sparse else matrix.to_sparse()).coalesce()
        self.num_nodes = n
        self.is_dense = sparse.values().numel() >= dense_threshold * n * n
        self._csr_cache: tuple[Tensor, Tensor] | None = None
        if self.is_dense:
            self.register_buffer("dense", sparse.to_dense(), persistent=False)
            return
        for name, mat in (("fwd", sparse), ("bwd", sparse.t().coalesce())):
            with warnings.catch_warnings():  # torch warns once per process that CSR is "beta"
                warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
                csr = mat.to_sparse_csr()
            # int32 indices: with int64 every sparse product first converts them (2 copies a call)
            index = torch.int32 if csr.values().numel() < 2**31 else torch.int64
            self.register_buffer(f"{name}_crow", csr.crow_indices().to(index), persistent=False)
            self.register_buffer(f"{name}_col", csr.col_indices().to(index), persistent=False)
            self.register_buffer(f"{name}_val", csr.values(), persistent=False)

    def _apply(self, fn, recurse=True):
        self._csr_cache = None  # the buffers are being replaced (.to, .double, ...)
        return super()._apply(fn, recurse)

    def _csr_pair(self) -> tuple[Tensor, Tensor]:
        """CSR views of the buffers (``A``, ``A^T``), built once per placement."""
        if self._csr_cache is None:
            self._csr_cache = (self._csr("fwd"), self._csr("bwd"))
        return self._csr_cache

    def _csr(self, name: str) -> Tensor:
        parts = (getattr(self, f"{name}_{p}") for p in ("crow", "col", "val"))
        return torch.sparse_csr_tensor(
            *parts, (self.num_nodes, self.num_nodes), check_invariants=False
        )

    def to_dense(self) -> Tensor:
        """The matrix as a dense ``[N, N]`` tensor (for tests and references)."""
        return self.dense if self.is_dense else self._csr("fwd").to_dense()

    def _product(self, x: Tensor, prev: Tensor | None) -> Tensor:
        flat = x.reshape(self.num_nodes, -1)
        prev_flat = None if prev is None else prev.reshape(self.num_nodes, -1)
        if not self.is_dense:
            out = _CsrMatmul.apply(flat, prev_flat, *self._csr_pair())
        elif prev is None:
            out = self.dense @ flat
        else:
            out = torch.addmm(prev_flat, self.dense, flat, beta=-1, alpha=2)
        return out.view(x.shape)

    def forward(self, x: Tensor) -> Tensor:
        """``A x`` for ``x[N, ...]`` (any trailing shape); returns the same shape."""
        return self._product(x, None)

    def recur(self, x: Tensor, prev: Tensor) -> Tensor:
        """``2 A x - prev`` in one fused product: a step of the Chebyshev-like recursion."""
        return self._product(x, prev)
