"""Offline training, ONNX export and verification of the service's models (PyTorch)."""

import service  # noqa: F401  # first: it turns ONNX Runtime's telemetry off before any import of it
