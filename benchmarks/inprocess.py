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

from benchmarks.common import Mode, calls_for, median, time_calls
from benchmarks.models import ModelBench, make_session

log = logging.getLogger(__name__)

Runner = Callable[[int], object]  # runs batch number i


def batches_of(rows: Sequence[Any], size: int) -> list[list[Any]]:
    """Consecutive batches of ``size`` rows (dev order); rows are reused when there are fewer."""
    if len(rows) < size:
        rows = [rows[i % len(rows)] for i in range(size)]
    return [list(rows[i : i + size]) for i in range(0, len(rows) - size + 1, size)]


def side_by_side(runners: dict[str, Runner], count: int, mode: Mode) -> dict[str, float]:
    """Median seconds per call of each runner, the runners interleaved repeat by repeat.

    Every runner runs the same batch sequence; the number of calls per repeat is chosen so that
    the fastest runner's repeat lasts about ``mode.repeat_s``.
    """
    calls = max(calls_for(lambda fn=fn: fn(0), mode.repeat_s) for fn in runners.values())
    times: dict[str, list[float]] = defaultdict(list)
    for repeat in range(mode.repeats):
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


def ort_runner(session, feeds: list[dict]) -> Runner:
    names = {i.name for i in session.get_inputs()}
    inputs = [{k: v for k, v in f.items() if k in names} for f in feeds]
    return lambda i: session.run(None, inputs[i])


def torch_runner(module, model: ModelBench, feeds: list[dict]) -> Runner:
    import torch

    inputs = [tuple(torch.from_numpy(f[n]) for n in model.input_names) for f in feeds]

    def run(i: int) -> object:
        with torch.inference_mode():
            return module(*inputs[i])

    return run


def onnx_vs_torch(models: Sequence[ModelBench], mode: Mode) -> list[dict]:
    """Sentences/s and ms per batch of both backends, per model, thread count and batch size."""
    import torch

    results = []
    for model in models:
        rows = model.dev_rows(mode.text_limit)
        module = model.torch_module()
        for threads in mode.threads:
            torch.set_num_threads(threads)
            session = make_session(model.graph, threads)
            for size in mode.batch_sizes:
                feeds = [model.feeds(b) for b in batches_of(rows, size)]
                seconds = side_by_side(
                    {
                        "onnxruntime": ort_runner(session, feeds),
                        "pytorch": torch_runner(module, model, feeds),
                    },
                    len(feeds),
                    mode,
                )
                for backend, per_call in seconds.items():
                    results.append(
                        dict(
                            model=model.name,
                            threads=threads,
                            batch=size,
                            backend=backend,
                            ms_per_batch=per_call * 1000,
                            sentences_per_s=size / per_call,
                        )
                    )
                log.info(
                    "%s threads=%d batch=%d: ort %.2f ms, torch %.2f ms",
                    model.name,
                    threads,
                    size,
                    seconds["onnxruntime"] * 1000,
                    seconds["pytorch"] * 1000,
                )
    return results


def quantize(model: ModelBench, folder: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / f"{model.name}.int8.onnx"
    quantize_dynamic(model.graph, target, weight_type=QuantType.QInt8)
    return target


def quantization(models: Sequence[ModelBench], mode: Mode) -> list[dict]:
    """Speed of the int8 graph vs fp32 (batch 1 and 32) and the dev metrics of both."""
    results = []
    sizes = [s for s in (1, 32) if s in mode.batch_sizes] or [mode.batch_sizes[0]]
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        for model in models:
            started = time.perf_counter()
            int8 = quantize(model, Path(tmp))
            quantize_s = time.perf_counter() - started
            rows = model.dev_rows(mode.text_limit)
            fp32_session, int8_session = make_session(model.graph, 1), make_session(int8, 1)
            speed = {}
            for size in sizes:
                feeds = [model.feeds(b) for b in batches_of(rows, size)]
                seconds = side_by_side(
                    {
                        "fp32": ort_runner(fp32_session, feeds),
                        "int8": ort_runner(int8_session, feeds),
                    },
                    len(feeds),
                    mode,
                )
                speed[size] = dict(
                    fp32_ms=seconds["fp32"] * 1000,
                    int8_ms=seconds["int8"] * 1000,
                    speedup=seconds["fp32"] / seconds["int8"],
                )
            fp32_metrics = model.metrics(model.graph, 1, mode.metric_limit)
            int8_metrics = model.metrics(int8, 1, mode.metric_limit)
            results.append(
                dict(
                    model=model.name,
                    fp32_mb=model.graph.stat().st_size / 2**20,
                    int8_mb=int8.stat().st_size / 2**20,
                    quantize_s=quantize_s,
                    speed=speed,
                    fp32=fp32_metrics,
                    int8=int8_metrics,
                    headline=model.headline_metric,
                    metric_sizes=model.metric_sizes(mode.metric_limit),
                )
            )
            log.info("%s int8: %s", model.name, results[-1])
    return results


def ort_profile(model: ModelBench, batch: int = 1, calls: int = 50) -> list[tuple[str, float]]:
    """Share of ONNX Runtime's node time by operator type at ``batch`` (ORT profiler)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(
            str(model.graph), options, providers=["CPUExecutionProvider"]
        )
        feeds = [model.feeds(b) for b in batches_of(model.dev_rows(200), batch)]
        run = ort_runner(session, feeds)
        started = time.perf_counter()
        for i in range(calls):
            run(i % len(feeds))
        wall = time.perf_counter() - started
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1e6
    total_ops = sum(by_op.values())
    shares = sorted(((op, s / wall) for op, s in by_op.items()), key=lambda x: -x[1])
    shares.append(("(outside kernels: session.run overhead, I/O binding)", 1 - total_ops / wall))
    return shares
