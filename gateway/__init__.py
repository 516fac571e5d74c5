"""Fogline gateway: ingest, durable store, aggregation, inference and cloud relay."""

__version__ = "0.1.0"
