"""Datasets: the Series, synthetic profiles, real-file readers, the on-disk cache, normalization."""

from pgti_core.data.cache import Built, CacheError, cache_root, load_entry, load_or_build
from pgti_core.data.datasets import DatasetSpec, load_dataset, parse_dataset_spec
from pgti_core.data.errors import DataError
from pgti_core.data.formats import (
    DatasetFileError,
    FileSource,
    dense_to_edges,
    open_dcrnn,
    open_largest,
    open_pems,
    read_dcrnn,
    read_largest,
    read_pems,
)
from pgti_core.data.graph import SensorGraph, knn_gaussian_graph, road_graph
from pgti_core.data.normalize import Normalizer, step_weights, train_window_stats
from pgti_core.data.series import Series
from pgti_core.data.synthetic import (
    CHUNK_STEPS,
    GENERATOR_VERSION,
    PROFILES,
    Profile,
    generate,
    get_profile,
    iter_chunks,
)

__all__ = [
    "CHUNK_STEPS",
    "GENERATOR_VERSION",
    "PROFILES",
    "Built",
    "CacheError",
    "DataError",
    "DatasetFileError",
    "DatasetSpec",
    "FileSource",
    "Normalizer",
    "Profile",
    "SensorGraph",
    "Series",
    "cache_root",
    "dense_to_edges",
    "generate",
    "get_profile",
    "iter_chunks",
    "knn_gaussian_graph",
    "load_dataset",
    "load_entry",
    "load_or_build",
    "open_dcrnn",
    "open_largest",
    "open_pems",
    "parse_dataset_spec",
    "read_dcrnn",
    "read_largest",
    "read_pems",
    "road_graph",
    "step_weights",
    "train_window_stats",
]
