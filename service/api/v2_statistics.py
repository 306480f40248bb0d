"""The Open Inference Protocol's statistics extension (Triton's), read from the service's metrics.

``GET /v2/models[/{name}[/versions/{version}]]/stats`` and gRPC's ``ModelStatistics`` answer, per
model, counts and cumulative times since the server started, summed over every gunicorn worker:
the figures of ``/metrics`` (:mod:`service.metrics`), so the two always agree.

* ``inference_count``: rows run (texts; NER sentence pieces); ``execution_count``: graph calls.
* ``success`` and ``fail``: inference requests (``POST /v1/{task}``, ``/v2`` infer, gRPC
  ``ModelInfer``) answered with and without success, and the time each took in the server. A
  request for a model that is not loaded counts for none.
* ``queue``: how long requests waited for their first batch.
* ``compute_infer``: as Triton counts it, per request (its count is ``success``'s): the time of
  every graph call a request had rows in, so a call shared by three requests counts three
  times. ``batch_stats`` counts the graph calls themselves and their time, per batch size.
* ``last_inference``: when the model last ran a graph call, in milliseconds since the epoch.

``compute_input`` and ``compute_output`` (Triton's copies to and from a device) are not measured
apart: turning text into ids and results into JSON happens in the request and counts in
``success``. They are reported as zero, and so is the response cache (there is none).

Unlike Triton, ``queue`` counts every request that reached a batcher (failed ones too), and
``compute_infer``'s time includes the calls of requests that failed after them. Statistics are
per model name, not per version: after a reload they go on adding up. Each call reads every
worker's metric files, as a ``/metrics`` scrape does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from service.api.v2_schemas import (
    BatchStatistics,
    InferStatistics,
    ModelStatistics,
    StatisticDuration,
)
from service.api.v2_tasks import V2_ADAPTERS
from service.metrics import samples
from service.runtime.registry import LoadedModel, ModelRegistry

EXTENSION = "statistics"  # its name in the server metadata's extensions

# The HTTP routes (metrics' ``endpoint`` label) and gRPC method that run a model.
INFER_ENDPOINTS = frozenset(
    {
        "/v1/sentiment",
        "/v1/ner",
        "/v1/translate",
        "/v2/models/<name>/infer",
        "/v2/models/<name>/versions/<version>/infer",
    }
)
INFER_METHOD = "ModelInfer"
_NS = 1_000_000_000


class _Totals:
    """The metrics' sums for each model."""

    def __init__(self) -> None:
        self.value: dict[tuple[str, str], float] = defaultdict(float)  # (metric, model)
        self.duration: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.batches: dict[str, dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0])
        )

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        model = labels.get("model", "")
        if name in (
            "inference_rows_total",
            "inference_executions_total",
            "inference_request_compute_seconds_total",
        ):
            self.value[name, model] += value
        elif name == "inference_last_timestamp_seconds":
            self.value[name, model] = max(self.value[name, model], value)
        elif name.startswith(("inference_queue_seconds", "inference_compute_seconds")):
            self._duration(name, model, value)
        elif name.startswith("http_request_duration_seconds"):
            if labels.get("endpoint") in INFER_ENDPOINTS:
                outcome = "success" if labels.get("status") == "200" else "fail"
                self._duration(f"{outcome}_{name}", model, value)
        elif name.startswith("grpc_request_duration_seconds"):
            if labels.get("method") == INFER_METHOD:
                outcome = "success" if labels.get("code") == "OK" else "fail"
                self._duration(f"{outcome}_{name}", model, value)
        elif name in ("inference_batch_executions_total", "inference_batch_seconds_total"):
            which = 0 if name == "inference_batch_executions_total" else 1
            self.batches[model][int(labels["batch_size"])][which] += value

    def _duration(self, name: str, model: str, value: float) -> None:
        """A histogram's ``_count`` and ``_sum`` samples; its buckets are not needed."""
        base, _, part = name.rpartition("_")
        if part in ("count", "sum"):
            self.duration[base, model][part == "sum"] += value

    def stat(self, model: str, *bases: str) -> StatisticDuration:
        count = sum(self.duration[base, model][0] for base in bases)
        seconds = sum(self.duration[base, model][1] for base in bases)
        return StatisticDuration(count=round(count), ns=round(seconds * _NS))


def served_models(registry: ModelRegistry) -> list[LoadedModel]:
    """The models whose statistics a request naming none gets: every model the protocol serves."""
    return [m for m in registry.models.values() if m.manifest.task in V2_ADAPTERS]


def model_statistics(models: Iterable[LoadedModel]) -> list[ModelStatistics]:
    """The statistics of ``models``, in the order given."""
    totals = _Totals()
    for sample in samples():
        totals.add(sample.name, sample.labels, sample.value)
    return [_model(totals, model) for model in models]


def _model(totals: _Totals, model: LoadedModel) -> ModelStatistics:
    name = model.name
    requests = ("http_request_duration_seconds", "grpc_request_duration_seconds")
    zero = StatisticDuration(count=0, ns=0)
    success = totals.stat(name, *(f"success_{r}" for r in requests))
    compute_s = totals.value["inference_request_compute_seconds_total", name]
    return ModelStatistics(
        name=name,
        version=model.manifest.version,
        last_inference=round(totals.value["inference_last_timestamp_seconds", name] * 1000),
        inference_count=round(totals.value["inference_rows_total", name]),
        execution_count=round(totals.value["inference_executions_total", name]),
        inference_stats=InferStatistics(
            success=success,
            fail=totals.stat(name, *(f"fail_{r}" for r in requests)),
            queue=totals.stat(name, "inference_queue_seconds"),
            compute_input=zero,
            # As Triton counts it: per request, each with the time of the calls it had rows in.
            compute_infer=StatisticDuration(count=success.count, ns=round(compute_s * _NS)),
            compute_output=zero,
            cache_hit=zero,
            cache_miss=zero,
        ),
        batch_stats=_batches(totals.batches[name]),
    )


def _batches(by_size: dict[int, list[float]]) -> list[BatchStatistics]:
    zero = StatisticDuration(count=0, ns=0)
    return [
        BatchStatistics(
            batch_size=size,
            compute_input=zero,
            compute_infer=StatisticDuration(count=round(count), ns=round(seconds * _NS)),
            compute_output=zero,
        )
        for size, (count, seconds) in sorted(by_size.items())
    ]
