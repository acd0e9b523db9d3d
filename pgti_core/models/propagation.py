"""A fixed graph matrix applied to a whole batch at once, without replicating the edges per sample.

Models keep signals channel-first, ``[C, ..., N, B]`` (channels, then steps if any, nodes, and
the batch last), so one tensor is two matrices at no cost: ``[C, ... N B]``, whose channels one
GEMM mixes (:func:`channel_mix`, ``W^T X``), and ``[C ... N, B]``, which the block-diagonal
``I (x) A`` propagates in one sparse product (:class:`GraphOperator`). Both are O(E + N B C) in
memory, not O(B E) as when the edge index is repeated per sample (PyTorch Geometric Temporal's
batched models), and the recurrence never changes layout. Channels first rather than last
because the mixing GEMMs are skinny (C, O = 2-10 in the PGT-I cell): on one thread here
``[4, 10] @ [10, 20800]`` takes 56 us where ``[20800, 10] @ [10, 4]`` takes 373 us, and
concatenating or splitting channels is then a copy of whole blocks, not of strided rows.
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
    """Per-node linear map of channels, one GEMM: ``x[C, ...]``, ``weight[C, O]`` -> ``[O, ...]``.

    ``bias`` is ``[O]`` or a whole ``[O, ...]`` tensor to add (a precomputed input share), fused
    into the GEMM."""
    flat = x.reshape(x.size(0), -1)
    if bias is None:
        out = weight.t() @ flat
    else:
        shift = bias.reshape(weight.size(1), -1) if bias.dim() > 1 else bias.unsqueeze(1)
        out = torch.addmm(shift, weight.t(), flat)
    return out.view(weight.size(1), *x.shape[1:])


MAX_BLOCK_ENTRIES = 2**23
"""Most entries of one block-diagonal product matrix (64 MB of indices and values): a product
over more slices than fit runs in chunks of slices."""


class _CsrMatmul(torch.autograd.Function):
    """``A @ x`` for CSR ``A``; the backward uses a stored CSR ``A^T``.

    Autograd through ``torch.sparse.mm`` builds the transpose on every backward (~30x slower);
    re-checked on torch 2.13: plain ``csr @ x`` with autograd took 3.4 ms forward + backward
    against this Function's 1.8 ms (N = 325, E = 2209, 512 columns, one thread, interleaved).
    """

    @staticmethod
    def forward(ctx, x: Tensor, mat: Tensor, mat_t: Tensor) -> Tensor:
        ctx.mat_t = mat_t
        return _spmm(mat, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None]:
        return (_spmm(ctx.mat_t, grad) if ctx.needs_input_grad[0] else None), None, None


def _spmm(mat: Tensor, x: Tensor) -> Tensor:
    """``mat @ x`` for CSR ``mat`` and dense 2-D ``x``, written straight into a fresh output.

    ``csr @ x`` zero-fills a result and copies it out; ``addmm(..., beta=0, out=)`` does neither:
    1.23x faster (median of 15 interleaved rounds, 217 against 269 us, for the ``[3250, 650]``
    product of a ``dcrnn-paper`` step at N = 325, B = 64, one thread).
    """
    out = x.new_empty(mat.shape[0], x.shape[1])
    return torch.addmm(out, mat, x, beta=0, out=out)


def _replicate(
    indices: Tensor, values: Tensor, n: int, blocks: int, m: int
) -> tuple[Tensor, Tensor]:
    """Entries of the ``[blocks m n, m n]`` matrix whose row block ``(r, q)`` is the r-th
    ``n x n`` block of the ``[blocks n, n]`` COO ``(indices, values)`` at column block ``q``."""
    q = torch.arange(m, dtype=indices.dtype).view(-1, 1)
    block, row = indices[0] // n, indices[0] % n
    rows = ((block * m + q) * n + row).flatten()
    cols = (q * n + indices[1]).flatten()
    return torch.stack([rows, cols]), values.repeat(m)


def _csr(indices: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A CSR matrix with int32 indices where they fit (with int64 every sparse product first
    converts them: two copies a call)."""
    with warnings.catch_warnings():  # torch warns once per process that CSR is "beta"
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        csr = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True)
        csr = csr.coalesce().to_sparse_csr()
    index = torch.int32 if values.numel() < 2**31 else torch.int64
    return torch.sparse_csr_tensor(
        csr.crow_indices().to(index), csr.col_indices().to(index), csr.values(), shape,
        check_invariants=False,
    )  # fmt: skip


class GraphOperator(nn.Module):
    """A constant stack of ``R`` ``[N, N]`` matrices ``A_r`` (one ``[R N, N]`` matrix) applied to
    channel-first tensors ``x[..., N, B]``: ``y[r, ..., i, b] = sum_j A_r[i, j] x[..., j, b]`` for
    every leading index (channel, step); ``y`` is ``[R, ..., N, B]``, or ``x``'s shape if R = 1.

    A stack gives every diffusion term of a convolution in one product (:mod:`.diffusion`).
    Stored dense when its density is at least ``dense_threshold`` (a dense matmul is then
    faster), otherwise sparse: a product over the ``m`` leading slices of ``x`` is one CSR
    product with the matrix whose block ``(r, q), q`` is ``A_r`` (``m`` R E entries, built once per
    ``m`` with its transpose for the backward, and cached). Measured at N = 325, B = 64 on one
    thread, that is as fast as ``A`` on the node-major ``[N, m B]`` for m = 2-4 (57-103 us). The
    matrix is a non-persistent buffer, so ``.to()``/``.double()`` move it and checkpoints hold
    only weights.

    Args:
        matrix (Tensor): ``[R N, N]`` sparse COO or dense matrix (R >= 1).
        dense_threshold (float, default ``DENSE_THRESHOLD``): density at which to store it dense.
    """

    def __init__(self, matrix: Tensor, dense_threshold: float = DENSE_THRESHOLD) -> None:
        super().__init__()
        rows, n = matrix.shape if matrix.dim() == 2 else (0, 0)
        if n < 1 or rows % n:
            raise ValueError(
                f"matrix: expected a stack of square matrices, [R N, N], got {tuple(matrix.shape)}"
            )
        sparse = (matrix if matrix.is_sparse else matrix.to_sparse()).coalesce()
        self.num_nodes, self.blocks = n, rows // n
        self.is_dense = sparse.values().numel() >= dense_threshold * rows * n
        self._products: dict[int, tuple[Tensor, Tensor]] = {}
        if self.is_dense:
            self.register_buffer("dense", sparse.to_dense(), persistent=False)
        else:
            self.register_buffer("indices", sparse.indices(), persistent=False)
            self.register_buffer("values", sparse.values(), persistent=False)

    def _apply(self, fn, recurse=True):
        self._products = {}  # the buffers are being replaced (.to, .double, ...)
        return super()._apply(fn, recurse)

    def _product_pair(self, m: int) -> tuple[Tensor, Tensor]:
        """CSR product matrix over ``m`` slices and its transpose, built once per ``m`` and placement."""
        if m not in self._products:
            n, r = self.num_nodes, self.blocks
            idx, val = _replicate(self.indices, self.values, n, r, m)
            self._products[m] = (
                _csr(idx, val, (r * m * n, m * n)),
                _csr(idx.flip(0), val, (m * n, r * m * n)),
            )
        return self._products[m]

    def to_dense(self) -> Tensor:
        """The matrix as a dense ``[R N, N]`` tensor (for tests and references)."""
        return self.dense if self.is_dense else self._product_pair(1)[0].to_dense()

    def _block_product(self, slices: Tensor) -> Tensor:
        """``[m, N, B]`` -> ``[R, m, N, B]`` in one CSR product."""
        m, n, width = slices.shape
        out = _CsrMatmul.apply(slices.reshape(-1, width), *self._product_pair(m))
        return out.view(self.blocks, m, n, width)

    def _sparse_product(self, slices: Tensor) -> Tensor:
        """``[m, N, B]`` -> ``[R, m, N, B]``, in chunks of at most :data:`MAX_BLOCK_ENTRIES`."""
        step = max(1, MAX_BLOCK_ENTRIES // max(1, self.values.numel()))
        if slices.size(0) <= step:  # unsplit: a split's backward copies even a one-piece gradient
            return self._block_product(slices)
        return torch.cat([self._block_product(chunk) for chunk in slices.split(step)], dim=1)

    def product(
        self, x: Tensor, out: Tensor, *, transpose: bool = False, accumulate: bool = False
    ) -> Tensor:
        """``out (+)= A x`` (``A^T x`` if ``transpose``) for a one-matrix operator, outside autograd:
        ``x`` and ``out`` are ``[m, N, B]``, ``out`` contiguous; for hand-written backwards that
        write a product straight into its place (a slice of a larger buffer, or a gradient to add to).
        """
        if self.blocks != 1 or x.dim() != 3 or x.size(1) != self.num_nodes or out.shape != x.shape:
            raise ValueError(
                f"product: a one-matrix operator on [m, {self.num_nodes}, B] into the same shape, "
                f"got {self.blocks} matrices, x {tuple(x.shape)}, out {tuple(out.shape)}"
            )
        if not out.is_contiguous():
            raise ValueError("product: out must be contiguous (the product is written in place)")
        beta = 1 if accumulate else 0
        if self.is_dense:
            mat = self.dense.t() if transpose else self.dense
            if accumulate:
                return out.baddbmm_(mat.expand(x.size(0), -1, -1), x)
            return torch.matmul(mat, x, out=out)
        step = max(1, MAX_BLOCK_ENTRIES // max(1, self.values.numel()))
        for src, dst in zip(x.split(step), out.split(step), strict=True):
            mat = self._product_pair(src.size(0))[1 if transpose else 0]
            flat = dst.view(-1, dst.size(-1))
            torch.addmm(flat, mat, src.reshape(-1, src.size(-1)), beta=beta, out=flat)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """``x[..., N, B]`` (nodes second to last) -> ``[R, ..., N, B]`` (``x``'s shape if R = 1)."""
        if x.dim() < 2 or x.size(-2) != self.num_nodes:
            raise ValueError(
                f"x: expected [..., {self.num_nodes}, B] (nodes second to last), got "
                f"{tuple(x.shape)}"
            )
        slices = x.reshape(-1, self.num_nodes, x.size(-1))
        if self.is_dense:  # [m, R N, B] -> [R, m, N, B]
            out = torch.matmul(self.dense, slices).view(
                slices.size(0), self.blocks, *slices.shape[1:]
            )
            out = out.transpose(0, 1)
        else:
            out = self._sparse_product(slices)
        return out.reshape(x.shape if self.blocks == 1 else (self.blocks, *x.shape))
