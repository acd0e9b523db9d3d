"""Spatiotemporal models whose graph operations run on a whole batch at once."""

from pgti_core.models.a3tgcn import A3TGCN
from pgti_core.models.dcrnn import DCRNN, DCGRUCell, DCRNNPaper
from pgti_core.models.diffusion import (
    DiffusionConv,
    diffusion_mix,
    diffusion_operator,
    diffusion_polynomials,
    dual_random_walk_supports,
)
from pgti_core.models.graph_gru import GraphGRUCell
from pgti_core.models.propagation import (
    DENSE_THRESHOLD,
    GraphOperator,
    channel_mix,
    edge_tensors,
)
from pgti_core.models.registry import MODELS, build_model
from pgti_core.models.tgcn import TGCN, TGCNCell, gcn_matrix

__all__ = [
    "A3TGCN",
    "DCRNN",
    "DCGRUCell",
    "DCRNNPaper",
    "diffusion_operator",
    "diffusion_polynomials",
    "DiffusionConv",
    "diffusion_mix",
    "dual_random_walk_supports",
    "GraphGRUCell",
    "DENSE_THRESHOLD",
    "GraphOperator",
    "channel_mix",
    "edge_tensors",
    "MODELS",
    "build_model",
    "TGCN",
    "TGCNCell",
    "gcn_matrix",
]
