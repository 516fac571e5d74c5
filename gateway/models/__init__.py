"""Committed anomaly model (ONNX files + manifest.json), written by tools/build_model.py; a package so it installs."""
