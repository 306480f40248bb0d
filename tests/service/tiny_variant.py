"""Give a tiny artifact an int8 variant, as ``python -m training quantize`` would record it.

The graph is really quantized (ONNX Runtime's ``quantize_dynamic``), so a test can tell which
file a session loaded; the metrics and speed-ups are made up (the service only reports them).
"""

from __future__ import annotations

from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

from service.runtime.manifest import VariantSpec, load_manifest, write_manifest

INT8_METRICS = {"dev_accuracy": 0.25}  # differs from the tiny manifest's 0.5 on purpose


def add_int8_variant(folder: Path, *, qualified: bool = True) -> Path:
    """Write ``<graph>.int8.onnx`` for every graph of ``folder`` and list them in the manifest."""
    manifest = load_manifest(folder)
    graphs = {}
    for graph, spec in manifest.graphs.items():
        graphs[graph] = spec.file.removesuffix(".onnx") + ".int8.onnx"
        quantize_dynamic(folder / spec.file, folder / graphs[graph], weight_type=QuantType.QInt8)
    variant = VariantSpec(
        graphs=graphs,
        metrics=INT8_METRICS,
        speedup={"batch_1": 2.0 if qualified else 0.9, "batch_32": 1.5 if qualified else 0.9},
        quantization={"method": "onnxruntime.quantization.quantize_dynamic"},
        qualified=qualified,
    )
    write_manifest(folder, manifest.model_copy(update={"variants": {"int8": variant}}))
    return folder
