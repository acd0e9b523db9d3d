"""Model names and one builder, so the trainer and the harness pick models by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from pgti_core.models.dcrnn import DCRNN, DCRNNPaper
from pgti_core.models.propagation import EdgeArray
from pgti_core.models.tgcn import TGCN

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "dcrnn-paper": lambda lags, **kw: DCRNNPaper(lags=lags, **kw),
    "dcrnn": lambda lags, **kw: DCRNN(**kw),
    "tgcn": lambda lags, **kw: TGCN(**kw),
}
MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build_model(
    name: str,
    *,
    num_nodes: int,
    num_features: int,
    edge_index: EdgeArray,
    edge_weight: EdgeArray | None,
    lags: int,
    horizon: int,
    **kwargs,
) -> nn.Module:
    """Build model ``name`` for a graph and window geometry; ``kwargs`` go to its constructor.

    Args:
        name (str): one of :data:`MODELS` (``dcrnn-paper``, ``dcrnn``, ``tgcn``).
        num_nodes, num_features (int): N and F of the series.
        edge_index, edge_weight: the series' graph (``[2, E]`` and ``[E]``).
        lags, horizon (int): input and target steps.
        kwargs: e.g. ``hidden_size``, ``num_layers``, ``k``, ``dense_threshold``.
    """
    if name not in _BUILDERS:
        raise ValueError(f"model: unknown {name!r}; choose from {', '.join(MODELS)}")
    return _BUILDERS[name](
        lags,
        num_nodes=num_nodes,
        num_features=num_features,
        edge_index=edge_index,
        edge_weight=edge_weight,
        horizon=horizon,
        **kwargs,
    )
