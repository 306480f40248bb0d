"""PyTorch model definitions."""
