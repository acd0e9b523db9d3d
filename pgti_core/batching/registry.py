"""Strategy names as used on command lines and in results rows."""

from __future__ import annotations

import importlib

from pgti_core.batching.base import Strategy
from pgti_core.batching.index import GpuIndexStrategy, IndexStrategy
from pgti_core.batching.partitioned import PartitionedStrategy
from pgti_core.batching.standard import StandardStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (StandardStrategy, IndexStrategy, GpuIndexStrategy, PartitionedStrategy)
}


# Strategies with optional dependencies, imported on first use: name -> (module, class, extra).
OPTIONAL_STRATEGIES: dict[str, tuple[str, str, str]] = {
    "standard-dask": ("pgti_core.batching.dask_standard", "DaskStandardStrategy", "dask"),
}
ALL_STRATEGIES: tuple[str, ...] = (*STRATEGIES, *OPTIONAL_STRATEGIES)


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name``; unknown names raise ``ValueError`` listing the known."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    if name in OPTIONAL_STRATEGIES:
        module, cls, extra = OPTIONAL_STRATEGIES[name]
        try:
            return getattr(importlib.import_module(module), cls)
        except ImportError as err:
            raise ValueError(
                f"strategy: {name!r} needs the {extra} extra: pip install 'pgti[{extra}]'"
            ) from err
    raise ValueError(f"strategy: unknown {name!r}; choose from {', '.join(ALL_STRATEGIES)}")


def build_strategy(name: str, *args, **kwargs) -> Strategy:
    """Build strategy ``name`` with :class:`Strategy`'s arguments."""
    return strategy_class(name)(*args, **kwargs)
