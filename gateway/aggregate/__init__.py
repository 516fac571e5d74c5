"""Fog-tier aggregation: per-(node, metric) windows, late corrections, window statistics."""
