"""Strategy names as used on command lines and in results rows."""

from __future__ import annotations

from pgti_core.batching.base import Strategy
from pgti_core.batching.index import GpuIndexStrategy, IndexStrategy
from pgti_core.batching.partitioned import PartitionedStrategy
from pgti_core.batching.standard import StandardStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (StandardStrategy, IndexStrategy, GpuIndexStrategy, PartitionedStrategy)
}


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name``; unknown names raise ``ValueError`` listing the known."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"strategy: unknown {name!r}; choose from {', '.join(STRATEGIES)}"
        ) from None


def build_strategy(name: str, *args, **kwargs) -> Strategy:
    """Build strategy ``name`` with :class:`Strategy`'s arguments."""
    return strategy_class(name)(*args, **kwargs)
