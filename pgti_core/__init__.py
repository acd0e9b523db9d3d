"""pgti: memory-efficient batching and scaling instruments for spatiotemporal GNNs (PGT-I)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pgti")
except PackageNotFoundError:  # running from a checkout that was not pip-installed
    __version__ = "0.0.0+unknown"
