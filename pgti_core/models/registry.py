"""Model names and one builder, so the trainer and the harness pick models by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from pgti_core.models.a3tgcn import A3TGCN
from pgti_core.models.dcrnn import DCRNN, DCRNNPaper
from pgti_core.models.diffusion import check_diffusion
from pgti_core.models.propagation import EdgeArray
from pgti_core.models.tgcn import TGCN

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "dcrnn-paper": lambda lags, **kw: DCRNNPaper(lags=lags, **kw),
    "dcrnn": lambda lags, **kw: DCRNN(**kw),
    "tgcn": lambda lags, **kw: TGCN(**kw),
    "a3tgcn": lambda lags, **kw: A3TGCN(lags=lags, **kw),
}
MODELS: tuple[str, ...] = tuple(_BUILDERS)
DIFFUSION_MODELS: tuple[str, ...] = ("dcrnn-paper", "dcrnn")
"""The models built on the diffusion convolution (the ones ``diffusion`` applies to)."""


def check_model(name: str, diffusion: str = "paper") -> None:
    """Raise ``ValueError`` (naming the field) unless ``name`` and ``diffusion`` go together."""
    if name not in _BUILDERS:
        raise ValueError(f"model: unknown {name!r}; choose from {', '.join(MODELS)}")
    check_diffusion(diffusion)
    if diffusion != "paper" and name not in DIFFUSION_MODELS:
        raise ValueError(
            f"diffusion: {name!r} has no diffusion convolution; only {', '.join(DIFFUSION_MODELS)}"
        )


def model_label(name: str, diffusion: str = "paper") -> str:
    """How a run names its model in results: ``dcrnn-paper``, or ``dcrnn-paper+pgt`` when it
    ran PGT's diffusion operator (a different model for comparisons; the schema stays as is)."""
    return name if diffusion == "paper" or name not in DIFFUSION_MODELS else f"{name}+{diffusion}"


def build_model(
    name: str,
    *,
    num_nodes: int,
    num_features: int,
    edge_index: EdgeArray,
    edge_weight: EdgeArray | None,
    lags: int,
    horizon: int,
    diffusion: str = "paper",
    **kwargs,
) -> nn.Module:
    """Build model ``name`` for a graph and window geometry; ``kwargs`` go to its constructor.

    Args:
        name (str): one of :data:`MODELS` (``dcrnn-paper``, ``dcrnn``, ``tgcn``, ``a3tgcn``).
        num_nodes, num_features (int): N and F of the series.
        edge_index, edge_weight: the series' graph (``[2, E]`` and ``[E]``).
        lags, horizon (int): input and target steps.
        diffusion (str, default ``"paper"``): the diffusion operator of :data:`DIFFUSION_MODELS`
            (``"pgt"``: PGT 0.56's; see :mod:`pgti_core.models.diffusion`).
        kwargs: e.g. ``hidden_size``, ``num_layers``, ``k``, ``dense_threshold``.
    """
    check_model(name, diffusion)
    if name in DIFFUSION_MODELS:
        kwargs["diffusion"] = diffusion
    return _BUILDERS[name](
        lags,
        num_nodes=num_nodes,
        num_features=num_features,
        edge_index=edge_index,
        edge_weight=edge_weight,
        horizon=horizon,
        **kwargs,
    )
