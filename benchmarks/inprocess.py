"""In-process benchmarks: ONNX Runtime vs PyTorch eager, and dynamic int8 quantization."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import Mode, calibrate, median, time_calls
from benchmarks.models import Backend, ModelBench, Runner

log = logging.getLogger(__name__)


def batches_of(rows: Sequence[Any], size: int) -> list[list[Any]]:
    """Consecutive batches of ``size`` rows (dev order); rows are reused when there are fewer."""
    if len(rows) < size:
        rows = [rows[i % len(rows)] for i in range(size)]
    return [list(rows[i : i + size]) for i in range(0, len(rows) - size + 1, size)]


def side_by_side(
    runners: dict[str, Runner], count: int, repeats: int, repeat_s: float
) -> dict[str, float]:
    """Median seconds per call of each runner, the runners interleaved repeat by repeat.

    Every runner runs the same batch sequence; the number of calls per repeat is chosen so that
    the fastest runner's repeat lasts about ``repeat_s`` (at least one call). Each runner's
    first call is a warm-up, unless every runner's lasted ``repeat_s`` or more: then what a
    first call costs extra (growing buffers) is small beside the call, and the warm-up calls
    are the first repeat (a beam search over 128 sentences, seconds a call, is not run once more
    only to warm up).
    """
    warm = {name: calibrate(lambda fn=fn: fn(0), repeat_s) for name, fn in runners.items()}
    calls = max(c.calls for c in warm.values())
    times: dict[str, list[float]] = defaultdict(list)
    if all(c.long_call_s is not None for c in warm.values()):
        for name, c in warm.items():
            times[name].append(c.long_call_s)
    for repeat in range(1 if times else 0, repeats):
        order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
        for name in order:
            fn = runners[name]
            elapsed = time_calls(_cycle(fn, count), calls)
            times[name].append(elapsed / calls)
    return {name: median(values) for name, values in times.items()}


def _cycle(fn: Runner, count: int) -> Callable[[], object]:
    state = {"i": 0}

    def call() -> object:
        i = state["i"]
        state["i"] = (i + 1) % count
        return fn(i)

    return call


def compare(
    model: ModelBench,
    backends: dict[str, Backend],
    rows: Sequence[Any],
    sizes: Sequence[int],
    mode: Mode,
    context: str = "",
) -> list[dict]:
    """Seconds per batch of each backend, for each of the model's variants and batch sizes
    (``context`` goes into the log lines)."""
    cells = []
    for variant in model.variants:
        for size in sizes:
            batches = batches_of(rows, size)
            seconds = side_by_side(
                {name: prepare(batches, variant) for name, prepare in backends.items()},
                len(batches),
                model.repeats(mode),
                mode.repeat_s,
            )
            cells.append(dict(variant=variant, batch=size, seconds=seconds))
            log.info(
                "%s %s %s batch=%d: %s",
                model.name,
                context,
                variant,
                size,
                ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in seconds.items()),
            )
    return cells


def onnx_vs_torch(models: Sequence[ModelBench], mode: Mode) -> list[dict]:
    """Sentences/s and ms per batch of both backends, per model, thread count, variant (the
    translation search) and batch size."""
    import torch

    results = []
    for model in models:
        rows = model.dev_rows(mode.text_limit)
        pytorch = model.torch_backend()
        for threads in mode.threads:
            torch.set_num_threads(threads)
            backends = {
                "onnxruntime": model.ort_backend(model.sessions(model.graphs, threads)),
                "pytorch": pytorch,
            }
            cells = compare(model, backends, rows, mode.batch_sizes, mode, f"threads={threads}")
            for cell in cells:
                for backend, per_call in cell["seconds"].items():
                    results.append(
                        dict(
                            model=model.name,
                            variant=cell["variant"],
                            threads=threads,
                            batch=cell["batch"],
                            backend=backend,
                            ms_per_batch=per_call * 1000,
                            sentences_per_s=cell["batch"] / per_call,
                        )
                    )
    return results


def quantize(model: ModelBench, folder: Path) -> dict[str, Path]:
    """Every graph of the model, dynamically quantized to int8, by graph name."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    targets = {}
    for name, graph in model.graphs.items():
        targets[name] = folder / f"{model.name}.{name}.int8.onnx"
        quantize_dynamic(graph, targets[name], weight_type=QuantType.QInt8)
    return targets


def megabytes(graphs: dict[str, Path]) -> float:
    return sum(path.stat().st_size for path in graphs.values()) / 2**20


def quantization(models: Sequence[ModelBench], mode: Mode) -> list[dict]:
    """Speed of the int8 graphs vs fp32 (batch 1 and 32, every variant) and the dev metrics of
    both."""
    results = []
    sizes = [s for s in (1, 32) if s in mode.batch_sizes] or [mode.batch_sizes[0]]
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        for model in models:
            started = time.perf_counter()
            int8 = quantize(model, Path(tmp))
            quantize_s = time.perf_counter() - started
            backends = {
                "fp32": model.ort_backend(model.sessions(model.graphs, 1)),
                "int8": model.ort_backend(model.sessions(int8, 1)),
            }
            rows = model.dev_rows(mode.text_limit)
            speed = [
                dict(
                    variant=cell["variant"],
                    batch=cell["batch"],
                    fp32_ms=cell["seconds"]["fp32"] * 1000,
                    int8_ms=cell["seconds"]["int8"] * 1000,
                    speedup=cell["seconds"]["fp32"] / cell["seconds"]["int8"],
                )
                for cell in compare(model, backends, rows, sizes, mode, "int8 vs fp32")
            ]
            results.append(
                dict(
                    model=model.name,
                    fp32_mb=megabytes(model.graphs),
                    int8_mb=megabytes(int8),
                    quantize_s=quantize_s,
                    speed=speed,
                    fp32=model.metrics(model.graphs, 1, mode.metric_limit),
                    int8=model.metrics(int8, 1, mode.metric_limit),
                    headline=model.headline_metric,
                    metric_sizes=model.metric_sizes(mode.metric_limit),
                )
            )
            log.info("%s int8: %s", model.name, results[-1])
    return results


def _ort_kernel_seconds(
    model: ModelBench, batch: int, calls: int
) -> tuple[dict[str, float], float]:
    """ONNX Runtime's kernel seconds by operator type (all the model's graphs together) over
    ``calls`` calls of the headline variant at ``batch``, 1 thread (ORT profiler), and the wall
    seconds of those calls."""
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
        sessions = model.sessions(model.graphs, 1, profile_prefix=str(Path(tmp) / "ort"))
        batches = batches_of(model.dev_rows(200), batch)
        run = model.ort_backend(sessions)(batches, model.variants[0])
        started = time.perf_counter()
        for i in range(calls):
            run(i % len(batches))
        wall = time.perf_counter() - started
        events = [
            event
            for session in sessions.values()
            for event in json.loads(Path(session.end_profiling()).read_text())
        ]
    by_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1e6
    return dict(by_op), wall


OUTSIDE_KERNELS = "(outside kernels: session.run overhead, I/O binding, Python around the calls)"


def ort_profile(model: ModelBench, batch: int = 1, calls: int = 50) -> list[tuple[str, float]]:
    """Share of ONNX Runtime's node time by operator type (all the model's graphs together) in
    the wall time of the headline variant at ``batch``, 1 thread (ORT profiler)."""
    by_op, wall = _ort_kernel_seconds(model, batch, calls)
    shares = sorted(((op, s / wall) for op, s in by_op.items()), key=lambda x: -x[1])
    shares.append((OUTSIDE_KERNELS, 1 - sum(by_op.values()) / wall))
    return shares


def ort_cost_per_text(model: ModelBench, batches: Sequence[int], texts: int = 800) -> list[dict]:
    """Microseconds per text by operator type at each batch size (about ``texts`` texts each,
    1 thread, ORT profiler): which part of a graph's cost batching shares out and which it
    does not."""
    rows = []
    for batch in batches:
        calls = max(1, texts // batch)
        by_op, wall = _ort_kernel_seconds(model, batch, calls)
        per_text = {op: 1e6 * seconds / (calls * batch) for op, seconds in by_op.items()}
        per_text[OUTSIDE_KERNELS] = 1e6 * (wall - sum(by_op.values())) / (calls * batch)
        rows.append(dict(batch=batch, us_per_text=per_text))
    return rows
