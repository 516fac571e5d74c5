"""Fogline gateway: ingest, durable store, aggregation, inference and cloud relay."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fogline")  # pyproject.toml's, the one version of gateway, tools and firmware
except PackageNotFoundError:  # imported from a tree that was never installed
    __version__ = "0+unknown"
