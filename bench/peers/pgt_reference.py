"""The PyTorch Geometric Temporal (PGT / PGT-I) baselines the benchmarks measure against.

* :class:`WindowDataset` + :func:`per_sample_loader`: PGT-I's index batching as released, one
  ``Dataset.__getitem__`` slice per sample and ``default_collate`` through a ``DataLoader``.
* :class:`BatchedDCRNNReference`: PGT 0.56's ``BatchedDCRNN(2, 2, K=3)``, its operator reproduced
  exactly (:func:`pgt_walks`): a batch of B graph signals becomes one disjoint graph of ``B * N``
  nodes (the edge index replicated B times with node offsets), diffused by PyG message passing,
  unrolled over the lags. Degrees come from a scatter, not a dense ``[B N, B N]`` adjacency, so
  the baseline is no slower than it needs to be and a speedup over it is conservative.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from pgti_core.data.windows import WindowSpec


class WindowDataset(Dataset):
    """Windows of one normalized series, cut one sample per ``__getitem__`` (PGT-I's loader).

    Args:
        values (Tensor): ``[T, N, F]`` normalized float32 series.
        starts (ndarray): window start indices of the split.
        spec (WindowSpec): lags and horizon.
    """

    def __init__(self, values: Tensor, starts: np.ndarray, spec: WindowSpec) -> None:
        if values.dim() != 3:
            raise ValueError(f"values: expected [T, N, F], got {tuple(values.shape)}")
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) and (starts.min() < 0 or starts.max() + spec.length > values.size(0)):
            raise ValueError(
                f"starts: windows of {spec.length} steps overrun {values.size(0)} steps"
            )
        self.values, self.starts, self.spec = values, starts, spec

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        s, lags = int(self.starts[i]), self.spec.lags
        return self.values[s : s + lags], self.values[s + lags : s + self.spec.length]


def per_sample_loader(
    values: Tensor, starts: np.ndarray, spec: WindowSpec, batch_size: int = 64, seed: int = 0
) -> DataLoader:
    """An endless shuffled ``DataLoader`` over :class:`WindowDataset` (main process, default collate).

    Args:
        values, starts, spec: see :class:`WindowDataset`.
        batch_size (int, default 64): samples per batch.
        seed (int, default 0): sampling seed.
    """
    ds = WindowDataset(values, starts, spec)
    sampler = RandomSampler(
        ds, replacement=True, num_samples=1 << 62, generator=torch.Generator().manual_seed(seed)
    )
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=0)


def replicate_edges(edge_index: Tensor, num_nodes: int, batch: int) -> Tensor:
    """The edge index of ``batch`` disjoint copies of a graph: ``[2, E]`` -> ``[2, batch * E]``."""
    offsets = torch.arange(batch, device=edge_index.device).repeat_interleave(edge_index.size(1))
    return edge_index.repeat(1, batch) + offsets * num_nodes


def pgt_walks(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, ...]:
    """PGT 0.56 ``BatchedDConv``'s propagation inputs: ``(edge_index, norm_out, reverse, norm_in)``.

    As PGT computes them: weighted out/in degrees; ``norm_out = 1/d_out[row]``; the reverse edges
    are ``dense_to_sparse(A^T)``'s, i.e. the flipped edges sorted by (target, source); and
    ``norm_in = 1/d_in[row]`` indexed by the *unsorted* list's sources (not permuted with them).
    Built from scatters and one argsort, not PGT's dense ``[B N, B N]`` adjacency, and once per
    forward rather than per convolution: the baseline is no slower than it needs to be.
    """
    row, col = edge_index
    deg_out = scatter(edge_weight, row, dim=0, dim_size=num_nodes, reduce="sum")
    deg_in = scatter(edge_weight, col, dim=0, dim_size=num_nodes, reduce="sum")
    reverse = edge_index.flip(0)[:, torch.argsort(col * num_nodes + row)]
    return edge_index, deg_out.reciprocal()[row], reverse, deg_in.reciprocal()[row]


class _DiffusionConvPGT(MessagePassing):
    """PGT 0.56's ``BatchedDConv`` on a (replicated) sparse graph: unweighted messages scaled by
    :func:`pgt_walks`' norms, and ``T_k = 2 S T_{k-1} - X`` (its recursion never advances the
    subtracted term). ``K`` counts the terms ``T_0 .. T_{K-1}`` per direction (DCRNN's diffusion
    steps are ``K - 1``).
    """

    def __init__(self, in_channels: int, out_channels: int, K: int) -> None:  # noqa: N803
        super().__init__(aggr="add", flow="source_to_target")
        self.K = K
        self.weight = nn.Parameter(torch.empty(2, K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.xavier_uniform_(self.weight)

    def message(self, x_j: Tensor, norm: Tensor) -> Tensor:
        return norm.view(-1, 1) * x_j

    def forward(self, x: Tensor, walks: tuple[Tensor, ...]) -> Tensor:
        fwd, norm_out, rev, norm_in = walks
        out = x @ self.weight[0, 0] + x @ self.weight[1, 0]
        if self.K > 1:
            t_o = self.propagate(fwd, x=x, norm=norm_out)
            t_i = self.propagate(rev, x=x, norm=norm_in)
            out = out + t_o @ self.weight[0, 1] + t_i @ self.weight[1, 1]
        for k in range(2, self.K):
            t_o = 2.0 * self.propagate(fwd, x=t_o, norm=norm_out) - x
            t_i = 2.0 * self.propagate(rev, x=t_i, norm=norm_in) - x
            out = out + t_o @ self.weight[0, k] + t_i @ self.weight[1, k]
        return out + self.bias


class BatchedDCRNNReference(nn.Module):
    """PGT's ``BatchedDCRNN(in_channels, out_channels, K)`` unrolled over the lags (the PGT-I cell).

    A DCGRU cell with hidden size ``out_channels`` whose three diffusion convolutions run on the
    batch-replicated graph; the state after input step t is the prediction of target step t.

    Args:
        num_nodes (int): N.
        edge_index (Tensor | ndarray): ``[2, E]`` graph of one sample.
        edge_weight (Tensor | ndarray): ``[E]`` weights.
        in_channels (int, default 2): F.
        out_channels (int, default 2): hidden and output size.
        K (int, default 3): PGT's filter size (diffusion steps + 1).
        horizon (int, default 12): target steps returned (the last states).
    """

    def __init__(
        self,
        num_nodes: int,
        edge_index: Tensor | np.ndarray,
        edge_weight: Tensor | np.ndarray,
        in_channels: int = 2,
        out_channels: int = 2,
        K: int = 3,  # noqa: N803
        horizon: int = 12,
    ) -> None:
        super().__init__()
        self.num_nodes, self.hidden, self.horizon = num_nodes, out_channels, horizon
        self.register_buffer(
            "edge_index", torch.as_tensor(np.asarray(edge_index), dtype=torch.long)
        )
        self.register_buffer(
            "edge_weight", torch.as_tensor(np.asarray(edge_weight), dtype=torch.float32)
        )
        size = in_channels + out_channels
        self.conv_z = _DiffusionConvPGT(size, out_channels, K)
        self.conv_r = _DiffusionConvPGT(size, out_channels, K)
        self.conv_h = _DiffusionConvPGT(size, out_channels, K)

    def forward(self, x: Tensor) -> Tensor:
        """``x[B, lags, N, F]`` -> ``[B, horizon, N, out_channels]``."""
        b, lags, n, f = x.shape
        walks = pgt_walks(replicate_edges(self.edge_index, n, b), self.edge_weight.repeat(b), b * n)
        h = x.new_zeros(b * n, self.hidden)
        states = []
        for t in range(lags):
            xt = x[:, t].reshape(b * n, f)
            xh = torch.cat([xt, h], dim=1)
            z = torch.sigmoid(self.conv_z(xh, walks))
            r = torch.sigmoid(self.conv_r(xh, walks))
            c = torch.tanh(self.conv_h(torch.cat([xt, h * r], dim=1), walks))
            h = z * h + (1 - z) * c
            states.append(h.view(b, n, self.hidden))
        return torch.stack(states[lags - self.horizon :], dim=1)
