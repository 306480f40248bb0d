"""Offline training, ONNX export and verification of the service's models (PyTorch)."""
