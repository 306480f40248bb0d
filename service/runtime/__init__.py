"""Model artifacts at run time: verified manifests, ONNX Runtime sessions, the registry."""
