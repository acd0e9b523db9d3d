"""Batching strategies: how windows of a series become mini-batches on one rank."""

from pgti_core.batching.base import Batch, Strategy
from pgti_core.batching.index import GpuIndexStrategy, IndexStrategy
from pgti_core.batching.partitioned import PartitionedStrategy
from pgti_core.batching.registry import STRATEGIES, build_strategy
from pgti_core.batching.standard import StandardStrategy
from pgti_core.data.windows import WindowSpec, split_starts

__all__ = [
    "Batch",
    "Strategy",
    "StandardStrategy",
    "IndexStrategy",
    "GpuIndexStrategy",
    "PartitionedStrategy",
    "STRATEGIES",
    "build_strategy",
    "WindowSpec",
    "split_starts",
]
