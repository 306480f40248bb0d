"""Dynamic int8 quantization of an exported model, recorded only once it is shown to pay off.

``python -m training quantize TASK --model-dir exported_models/NAME`` writes an int8 copy of
every graph of the artifact next to the fp32 one (``model.onnx`` -> ``model.int8.onnx``) with
ONNX Runtime's ``quantize_dynamic`` (int8 weights, activations quantized on the fly), then
verifies it the way the export verified the fp32 graphs:

* the dev metrics of both precisions, on the full dev set, through each task's own evaluation
  code (its ``dev_evaluation`` function, which the export's metrics also come from);
* the speed ratio fp32 / int8 on real dev batches of 1 and 32 texts, on one thread: the graph
  calls that the service's predictor makes for those batches are recorded once, then replayed
  on both precisions in interleaved repeats, and the medians compared.

The variant is written to the manifest (``variants.int8``, its files hashed like every other)
only if it is at least :attr:`Criteria.min_speedup` times faster at every batch size and loses
at most :attr:`Criteria.max_loss_points` on every dev metric; otherwise its files are removed
and :class:`QuantizationRejected` gives the numbers. ``force`` records a variant that missed the
criteria, marked ``qualified: false`` (the service then warns when it loads it).

A task takes part by defining ``dev_evaluation(folder, manifest, config) -> DevEvaluation`` in
``training/tasks/<task>.py``; nothing here depends on the number of graphs.
"""

from __future__ import annotations

import importlib
import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.predictors import PREDICTOR_FACTORIES
from service.runtime.batcher import InlineBatches
from service.runtime.manifest import Manifest, VariantSpec, load_manifest
from service.runtime.session import OnnxSession, SessionConfig
from training.config import from_dict, with_datasets_dir
from training.model_card import seal

log = logging.getLogger(__name__)

INT8 = "int8"
BATCH_SIZES = (1, 32)
GraphFiles = Mapping[str, Path]  # graph name -> file
GraphCall = tuple[str, dict[str, np.ndarray]]  # graph name, feeds


@dataclass(frozen=True)
class DevEvaluation:
    """What a task gives the quantizer: dev metrics of any set of graph files (in percent,
    keyed like the manifest's ``metrics``), and raw dev texts to time the predictor on."""

    metrics: Callable[[GraphFiles, int], dict[str, float]]  # (graph files, threads) -> metrics
    texts: list[str]


@dataclass(frozen=True)
class Criteria:
    """When an int8 variant is worth serving (from the issue that asked for it)."""

    min_speedup: float = 1.3  # fp32 time / int8 time, at every batch size
    max_loss_points: float = 0.5  # fp32 metric - int8 metric, for every dev metric


@dataclass(frozen=True)
class Timing:
    """How the speed ratio is measured."""

    batch_sizes: tuple[int, ...] = BATCH_SIZES
    texts: int = 512  # dev texts per batch size (the first ones, in file order)
    repeats: int = 7  # interleaved fp32/int8 repeats; the median of each is compared
    threads: int = 1


@dataclass
class QuantizationReport:
    """The measurements of one quantization and the verdict."""

    model: str
    files: dict[str, str]  # graph name -> int8 file
    fp32_metrics: dict[str, float]
    int8_metrics: dict[str, float]
    ms_per_batch: dict[str, dict[str, float]]  # "batch_N" -> {"fp32": ms, "int8": ms}
    failures: list[str] = field(default_factory=list)
    recorded: bool = False

    @property
    def speedup(self) -> dict[str, float]:
        return {b: ms["fp32"] / ms["int8"] for b, ms in self.ms_per_batch.items()}

    @property
    def qualified(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """The measured numbers, one line each, for the log and the error message."""
        lines = [
            f"{batch}: {ms['fp32']:.3f} ms fp32 -> {ms['int8']:.3f} ms int8 "
            f"({self.speedup[batch]:.2f}x)"
            for batch, ms in self.ms_per_batch.items()
        ]
        lines += [
            f"{key}: {value:.2f} fp32 -> {self.int8_metrics.get(key, float('nan')):.2f} int8 "
            f"({self.int8_metrics.get(key, float('nan')) - value:+.2f})"
            for key, value in self.fp32_metrics.items()
        ]
        return "\n".join(lines)


class QuantizationRejected(Exception):
    """The int8 variant missed the criteria; its files were removed."""

    def __init__(self, report: QuantizationReport):
        self.report = report
        super().__init__(
            f"the int8 variant of {report.model!r} does not qualify and was not recorded "
            f"({'; '.join(report.failures)}); measured:\n{report.summary()}"
        )


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A plain CPU session with pinned thread counts, for evaluation code written against the
    ``InferenceSession.run(outputs, feeds)`` interface."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def graph_sessions(manifest: Manifest, files: GraphFiles, threads: int) -> dict[str, OnnxSession]:
    """The service's sessions over ``files`` (one per graph of ``manifest``, e.g. its int8
    variant), with ``threads`` intra-op threads."""
    config = SessionConfig(intra_op_threads=threads, inter_op_threads=1)
    return {name: OnnxSession(files[name], spec, config) for name, spec in manifest.graphs.items()}


def int8_file_name(file: str) -> str:
    """``model.onnx`` -> ``model.int8.onnx``: the variant lies next to its fp32 graph."""
    path = Path(file)
    return f"{path.stem}.{INT8}{path.suffix}"


def quantize_model(
    folder: Path,
    *,
    task: str | None = None,
    datasets_dir: Path | None = None,
    force: bool = False,
    criteria: Criteria = Criteria(),
    timing: Timing = Timing(),
) -> QuantizationReport:
    """Quantize, verify and (if it qualifies, or with ``force``) record the int8 variant of
    the artifact in ``folder``. Raises :class:`QuantizationRejected` otherwise."""
    folder = Path(folder)
    manifest = load_manifest(folder, verify=True, task=task)
    evaluation = task_evaluation(folder, manifest, datasets_dir)
    base = manifest.model_copy(update={"variants": _without_int8(manifest)})
    files = write_int8_graphs(folder, manifest)
    try:
        report = verify_int8(folder, manifest, files, evaluation, criteria, timing)
    except BaseException:
        _discard(folder, files, manifest, base)
        raise
    log.info("int8 variant of %s:\n%s", manifest.name, report.summary())
    if not report.qualified and not force:
        _discard(folder, files, manifest, base)
        raise QuantizationRejected(report)
    if not report.qualified:
        log.warning("recording a non-qualifying int8 variant (--force): %s", report.failures)
    variant = variant_spec(report, criteria, timing)
    try:
        seal(folder, base.model_copy(update={"variants": {**base.variants, INT8: variant}}))
    except BaseException:
        for file in files.values():
            (folder / file).unlink(missing_ok=True)
        seal(folder, base)  # the fp32 model alone, as before, with its card
        raise
    report.recorded = True
    return report


def task_evaluation(folder: Path, manifest: Manifest, datasets_dir: Path | None) -> DevEvaluation:
    """The task's ``dev_evaluation`` on the training configuration the manifest records (its
    dev sets), read from ``datasets_dir`` when given."""
    module = importlib.import_module(f"training.tasks.{manifest.task}")
    dev_evaluation = getattr(module, "dev_evaluation", None)
    if dev_evaluation is None:
        raise NotImplementedError(
            f"training/tasks/{manifest.task}.py has no dev_evaluation(folder, manifest, config) "
            "-> training.quantize.DevEvaluation, so its variants cannot be verified"
        )
    config = with_datasets_dir(from_dict(manifest.task, manifest.training_config), datasets_dir)
    return dev_evaluation(folder, manifest, config)


def write_int8_graphs(folder: Path, manifest: Manifest) -> dict[str, str]:
    """Quantize every graph (int8 weights, dynamic activations); returns graph -> file."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    files = {}
    for graph, spec in manifest.graphs.items():
        files[graph] = int8_file_name(spec.file)
        quantize_dynamic(folder / spec.file, folder / files[graph], weight_type=QuantType.QInt8)
        log.info(
            "%s: %.1f MB -> %s: %.1f MB",
            spec.file,
            (folder / spec.file).stat().st_size / 1e6,
            files[graph],
            (folder / files[graph]).stat().st_size / 1e6,
        )
    return files


def verify_int8(
    folder: Path,
    manifest: Manifest,
    files: Mapping[str, str],
    evaluation: DevEvaluation,
    criteria: Criteria,
    timing: Timing,
) -> QuantizationReport:
    """Measure both precisions' dev metrics and speed, and judge the variant."""
    fp32 = {graph: manifest.path_of(folder, graph) for graph in manifest.graphs}
    int8 = {graph: folder / file for graph, file in files.items()}
    fp32_metrics = evaluation.metrics(fp32, timing.threads)
    _compare_with_export(manifest, fp32_metrics)
    int8_metrics = evaluation.metrics(int8, timing.threads)
    seconds = measure_speed(folder, manifest, {"fp32": fp32, INT8: int8}, evaluation.texts, timing)
    report = QuantizationReport(
        model=manifest.name,
        files=dict(files),
        fp32_metrics=fp32_metrics,
        int8_metrics=int8_metrics,
        ms_per_batch={
            f"batch_{size}": {name: s * 1000 for name, s in per_precision.items()}
            for size, per_precision in seconds.items()
        },
    )
    report.failures = judge(report, criteria)
    return report


def judge(report: QuantizationReport, criteria: Criteria) -> list[str]:
    """Every criterion the variant misses, in words (empty: it qualifies)."""
    failures = [
        f"{batch} only {ratio:.2f}x faster (needs {criteria.min_speedup:g}x)"
        for batch, ratio in report.speedup.items()
        if not ratio >= criteria.min_speedup
    ]
    for key, value in report.fp32_metrics.items():
        loss = value - report.int8_metrics.get(key, float("-inf"))
        if not loss <= criteria.max_loss_points:
            failures.append(
                f"{key} loses {loss:.2f} points (at most {criteria.max_loss_points:g} allowed)"
            )
    return failures


def measure_speed(
    folder: Path,
    manifest: Manifest,
    precisions: Mapping[str, GraphFiles],
    texts: Sequence[str],
    timing: Timing,
) -> dict[int, dict[str, float]]:
    """Median seconds per batch of each precision, per batch size.

    The graph calls (one per graph, or one encoder call and many decoder steps) that the
    service's predictor makes for each batch of dev texts are recorded once on the first
    precision, then replayed on every precision's sessions, so all run identical inputs.
    """
    sessions = {
        name: graph_sessions(manifest, files, timing.threads) for name, files in precisions.items()
    }
    first = next(iter(sessions.values()))
    texts = list(texts[: timing.texts])
    results = {}
    for size in timing.batch_sizes:
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        calls = record_graph_calls(folder, manifest, first, batches)
        runners = {name: _replay(graphs, calls) for name, graphs in sessions.items()}
        seconds = interleaved_medians(runners, timing.repeats)
        results[size] = {name: s / len(batches) for name, s in seconds.items()}
        log.info(
            "batch %d (%d batches): %s ms per batch",
            size,
            len(batches),
            {name: round(s * 1000, 3) for name, s in results[size].items()},
        )
    return results


class _RecordingSession:
    """An :class:`OnnxSession` that also keeps the feeds of every call."""

    def __init__(self, session: OnnxSession, graph: str, calls: list[GraphCall]):
        self._session, self._graph, self._calls = session, graph, calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._calls.append((self._graph, dict(feeds)))
        return self._session.run(feeds)


def record_graph_calls(
    folder: Path,
    manifest: Manifest,
    sessions: Mapping[str, OnnxSession],
    batches: Sequence[Sequence[str]],
) -> list[list[GraphCall]]:
    """The graph calls the service's predictor makes for each batch of texts."""
    calls: list[GraphCall] = []
    recorders = {g: _RecordingSession(s, g, calls) for g, s in sessions.items()}
    predictor = PREDICTOR_FACTORIES[manifest.task](folder, manifest, recorders)  # type: ignore[arg-type]
    # A batch of texts is one graph call whatever their lengths: speeds are per batch size.
    predictor.scheduler = InlineBatches(manifest.task, predictor.run_rows, max(map(len, batches)))
    recorded = []
    for batch in batches:
        calls.clear()
        predictor.predict_batch(batch)
        recorded.append(list(calls))
    return recorded


def _replay(sessions: Mapping[str, OnnxSession], calls: list[list[GraphCall]]):
    def run() -> None:
        for batch in calls:
            for graph, feeds in batch:
                sessions[graph].run(feeds)

    return run


def interleaved_medians(
    runners: Mapping[str, Callable[[], None]], repeats: int
) -> dict[str, float]:
    """Median seconds of each runner over ``repeats``, alternating which one goes first, so
    that a slow spell of a busy machine hits both alike."""
    for run in runners.values():
        run()  # warm-up: allocations, caches
    times: dict[str, list[float]] = {name: [] for name in runners}
    for repeat in range(repeats):
        order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
        for name in order:
            started = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def variant_spec(report: QuantizationReport, criteria: Criteria, timing: Timing) -> VariantSpec:
    """The manifest entry: files, metrics, speed-ups and how they were obtained."""
    return VariantSpec(
        graphs=report.files,
        metrics=report.int8_metrics,
        speedup={batch: round(ratio, 3) for batch, ratio in report.speedup.items()},
        qualified=report.qualified,
        quantization={
            "method": "onnxruntime.quantization.quantize_dynamic",
            "weight_type": "QInt8",
            "onnxruntime": ort.__version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "fp32_metrics": report.fp32_metrics,
            "criteria": {
                "min_speedup": criteria.min_speedup,
                "max_loss_points": criteria.max_loss_points,
            },
            "timing": {
                "threads": timing.threads,
                "repeats": timing.repeats,
                "texts": timing.texts,
                "ms_per_batch": {
                    batch: {name: round(ms, 4) for name, ms in per.items()}
                    for batch, per in report.ms_per_batch.items()
                },
            },
            "failures": report.failures,
        },
    )


def _compare_with_export(manifest: Manifest, measured: Mapping[str, float]) -> None:
    """The fp32 metrics measured here should be the export's; say so when they are not."""
    differ = {
        k: (v, measured.get(k))
        for k, v in manifest.metrics.items()
        if k in measured
        if abs(v - measured[k]) > 1e-6
    }
    if differ:
        log.warning("fp32 dev metrics differ from the manifest's (manifest, now): %s", differ)


def _without_int8(manifest: Manifest) -> dict[str, VariantSpec]:
    return {name: v for name, v in manifest.variants.items() if name != INT8}


def _discard(folder: Path, files: Mapping[str, str], manifest: Manifest, base: Manifest) -> None:
    """Remove the int8 files, and a stale int8 entry of the manifest that named them."""
    for file in files.values():
        (folder / file).unlink(missing_ok=True)
    if INT8 in manifest.variants:
        seal(folder, base)
