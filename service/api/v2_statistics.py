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
# Counters read as they are: metric -> its key in the totals.
_COUNTERS = {
    "inference_rows_total": "rows",
    "inference_executions_total": "executions",
    "inference_request_compute_seconds_total": "compute_s",
}
_BATCH_COUNTERS = {"inference_batch_executions_total": 0, "inference_batch_seconds_total": 1}
_NS = 1_000_000_000
_ZERO = StatisticDuration(count=0, ns=0)


def _duration_kind(histogram: str, labels: dict[str, str]) -> str | None:
    """Which statistic a histogram's samples add to: ``queue``, ``success``, ``fail``, or none."""
    if histogram == "inference_queue_seconds":
        return "queue"
    if histogram == "http_request_duration_seconds" and labels["endpoint"] in INFER_ENDPOINTS:
        return "success" if labels["status"] == "200" else "fail"
    if histogram == "grpc_request_duration_seconds" and labels["method"] == INFER_METHOD:
        return "success" if labels["code"] == "OK" else "fail"
    return None


class _Totals:
    """The metrics' sums for each model, from every sample of the metrics."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, ...], float] = defaultdict(float)  # (model, key[, part])
        self.batches: dict[str, dict[int, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0])  # batch size -> [calls, seconds]
        )

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        model = labels.get("model", "")
        if name in _COUNTERS:
            self.sums[model, _COUNTERS[name]] += value
        elif name == "inference_last_timestamp_seconds":  # one gauge per worker: the latest
            self.sums[model, "last"] = max(self.sums[model, "last"], value)
        elif name in _BATCH_COUNTERS:
            self.batches[model][int(labels["batch_size"])][_BATCH_COUNTERS[name]] += value
        else:  # a histogram's _count and _sum (its buckets are not needed)
            histogram, _, part = name.rpartition("_")
            kind = _duration_kind(histogram, labels) if part in ("count", "sum") else None
            if kind is not None:
                self.sums[model, kind, part] += value

    def stat(self, model: str, kind: str) -> StatisticDuration:
        count, seconds = self.sums[model, kind, "count"], self.sums[model, kind, "sum"]
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
    success = totals.stat(name, "success")
    compute_ns = round(totals.sums[name, "compute_s"] * _NS)
    return ModelStatistics(
        name=name,
        version=model.manifest.version,
        last_inference=round(totals.sums[name, "last"] * 1000),
        inference_count=round(totals.sums[name, "rows"]),
        execution_count=round(totals.sums[name, "executions"]),
        inference_stats=InferStatistics(
            success=success,
            fail=totals.stat(name, "fail"),
            queue=totals.stat(name, "queue"),
            compute_input=_ZERO,
            # As Triton counts it: per request, each with the time of the calls it had rows in.
            compute_infer=StatisticDuration(count=success.count, ns=compute_ns),
            compute_output=_ZERO,
            cache_hit=_ZERO,
            cache_miss=_ZERO,
        ),
        batch_stats=[
            BatchStatistics(
                batch_size=size,
                compute_input=_ZERO,
                compute_infer=StatisticDuration(count=round(calls), ns=round(seconds * _NS)),
                compute_output=_ZERO,
            )
            for size, (calls, seconds) in sorted(totals.batches[name].items())
        ],
    )
