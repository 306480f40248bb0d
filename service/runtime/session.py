"""One ONNX Runtime session: explicit providers and threads, named I/O checked at load.

ONNX Runtime quietly falls back to the CPU when a GPU provider cannot start, and sizes its thread
pool to every core unless told otherwise (which, times several gunicorn workers, oversubscribes
the machine). Both are made explicit here and the providers actually in use are logged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort  # ONNX Runtime's telemetry is off: see service/__init__.py

from service.runtime.manifest import ArtifactError, GraphSpec, TensorSpec

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

# Manifest dtype -> the type string ONNX Runtime reports for a tensor of that dtype.
_ORT_TYPES = {
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "float32": "tensor(float)",
    "bool": "tensor(bool)",
}


class ProviderError(Exception):
    """The requested execution provider cannot be used on this machine."""


def resolve_providers(choice: str, available: Sequence[str] | None = None) -> tuple[str, ...]:
    """Turn ``ORT_PROVIDERS`` (auto | cpu | cuda) into an ordered provider list."""
    available = ort.get_available_providers() if available is None else available
    if choice == "cpu":
        return (CPU_PROVIDER,)
    if CUDA_PROVIDER in available:
        return (CUDA_PROVIDER, CPU_PROVIDER)
    if choice == "cuda":
        raise ProviderError(
            f"ORT_PROVIDERS=cuda but this onnxruntime build offers only {list(available)}; "
            "install onnxruntime-gpu (see README, 'GPU') or set ORT_PROVIDERS=auto"
        )
    return (CPU_PROVIDER,)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How to build sessions: providers in order of preference, thread counts.

    With ``strict``, a session that does not get the first provider is refused instead of
    silently running on the next one (``ORT_PROVIDERS=cuda`` must mean the GPU).
    """

    providers: tuple[str, ...] = (CPU_PROVIDER,)
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    strict: bool = False


class OnnxSession:
    """An ``InferenceSession`` whose inputs and outputs are the ones the manifest declares."""

    def __init__(self, path: Path, spec: GraphSpec, config: SessionConfig):
        self.path = Path(path)
        self._session = _open_session(self.path, config)
        _check_tensors(self.path, "inputs", spec.inputs, self._session.get_inputs())
        _check_tensors(self.path, "outputs", spec.outputs, self._session.get_outputs())
        self.providers: list[str] = list(self._session.get_providers())
        self.input_names: list[str] = [t.name for t in spec.inputs]
        self.output_names: list[str] = [t.name for t in spec.outputs]
        _check_providers(self.path, config, self.providers)
        logger.info("loaded %s with providers %s", self.path, self.providers)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on named inputs; returns every declared output by name."""
        values = self._session.run(self.output_names, dict(feeds))
        return dict(zip(self.output_names, values, strict=True))


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries that onnxruntime-gpu's ``[cuda,cudnn]`` extras install
    as wheels (``make install-gpu``), which the CUDA provider would not find on its own; system
    libraries are found either way. Once per process; only ONNX Runtime 1.21+ can do it."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # the provider then reports what it cannot find
        logger.warning("could not preload the CUDA libraries: %s", exc)


def _open_session(path: Path, config: SessionConfig) -> ort.InferenceSession:
    if CUDA_PROVIDER in config.providers:
        _preload_cuda_libraries()
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    # Sequential execution ignores the inter-op pool: more than one inter-op thread asks for
    # independent operators to run in parallel.
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if config.inter_op_threads > 1
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=list(config.providers)
        )
    except Exception as exc:  # ORT raises its own unrelated exception types for a bad graph
        raise ArtifactError(f"{path}: ONNX Runtime cannot load the graph: {exc}") from exc


def _check_tensors(
    path: Path, kind: str, declared: Sequence[TensorSpec], actual: Sequence[ort.NodeArg]
) -> None:
    expected = {t.name: (_ORT_TYPES[t.dtype], len(t.shape)) for t in declared}
    found = {t.name: (t.type, len(t.shape)) for t in actual}
    if expected != found:
        raise ArtifactError(
            f"{path}: graph {kind} {_describe(found)} differ from the manifest's "
            f"{_describe(expected)}; re-export the model or fix manifest.graphs"
        )


def _describe(tensors: dict[str, tuple[str, int]]) -> str:
    return ", ".join(f"{name}: {dtype} rank {rank}" for name, (dtype, rank) in tensors.items())


def _check_providers(path: Path, config: SessionConfig, in_use: list[str]) -> None:
    wanted = config.providers[0]
    if wanted in in_use:
        return
    if config.strict:
        raise ProviderError(f"{path}: {wanted} was requested but the session runs on {in_use}")
    logger.warning("%s: %s could not start, running on %s", path, wanted, in_use)
