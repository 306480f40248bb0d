"""ONNX export with named inputs/outputs and dynamic axes."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 17


def export_onnx(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = OPSET,
) -> Path:
    """Export ``module`` in eval mode with the TorchScript-based exporter, then check the graph.

    ``dynamo=False``: the dynamo exporter cannot trace ``pack_padded_sequence``, while the
    TorchScript exporter turns a packed (bi)RNN into ONNX LSTM/GRU nodes with sequence lengths.
    """
    module.eval()
    path = Path(path)
    with torch.no_grad():
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
