"""Benchmark suite: ``python -m benchmarks`` (``make bench``) measures the models in process,
over HTTP and on disk, and rewrites ``docs/benchmarks.md`` with its tables and plots.

Each model is described once in :mod:`benchmarks.models` (how to load the PyTorch model and the
ONNX graph, how to turn dev texts into graph inputs, how to score the dev set); a new model
(translation) slots in by adding one entry there.
"""

import service  # noqa: F401  # first: it turns ONNX Runtime's telemetry off before any import of it
