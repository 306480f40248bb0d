"""Prometheus metrics of the service, correct across gunicorn workers.

Under gunicorn, ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker
starts, so every worker writes its values to files there and ``GET /metrics`` (answered by any
worker) adds up all workers' files. Without it (tests, ``flask run``) the process's own registry
is served.

* ``http_requests_total``, ``http_request_duration_seconds``: by endpoint (the route pattern),
  model and status.
* ``http_requests_in_progress``: HTTP requests being handled now, in all workers (saturation:
  it nears workers x GUNICORN_THREADS when every request thread is busy).
* ``worker_resident_memory_bytes``: each live worker's resident memory (label ``pid``; in
  multiprocess mode prometheus_client's own process metrics are missing), updated at most once
  a second, when the worker answers a request.
* ``grpc_requests_total``, ``grpc_request_duration_seconds``: by method, model and status code,
  for the Open Inference Protocol over gRPC.
* ``inference_rows_total`` and ``inference_executions_total``: texts (or NER sentence pieces)
  run, and graph calls made, per model; their ratio is the average batch size.
* ``inference_queue_seconds``: how long a request waited for its first batch, per model.
* ``inference_compute_seconds``: how long one graph call took, per model.
* ``inference_batch_executions_total``, ``inference_batch_seconds_total``: graph calls and their
  time, per model and batch size (rows).
* ``inference_request_compute_seconds_total``: graph time as requests see it: a call's time
  counts once for every request that had rows in it (Triton's ``compute_infer``).
* ``inference_last_timestamp_seconds``: when a model last ran a graph call (the latest of all
  workers).
* ``model_info``: 1 for the version and precision of each model that each live worker serves
  (labels ``model``, ``version``, ``precision``, ``pid``), 0 for one it served before a reload:
  workers that disagree after a reload show here.
* ``model_reloads_total``: reloads per model and outcome (``succeeded``, ``failed``), those a
  worker follows (RELOAD_SIGNAL_DIR) included: a failed follow is otherwise only in the log.

The Open Inference Protocol's statistics (:mod:`service.api.v2_statistics`) are read from these.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.samples import Sample

if TYPE_CHECKING:
    from service.runtime.registry import LoadedModel

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["endpoint", "model", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from receiving a request to having its response.",
    ["endpoint", "model", "status"],
    buckets=_LATENCY_BUCKETS,
)
GRPC_REQUESTS = Counter("grpc_requests_total", "gRPC calls answered.", ["method", "model", "code"])
GRPC_LATENCY = Histogram(
    "grpc_request_duration_seconds",
    "Time from a gRPC thread taking up a call to having its response.",
    ["method", "model", "code"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_ROWS = Counter(
    "inference_rows_total", "Rows (texts, NER sentence pieces) run through a model.", ["model"]
)
INFERENCE_EXECUTIONS = Counter(
    "inference_executions_total", "Graph calls (batches) made by a model.", ["model"]
)
QUEUE_TIME = Histogram(
    "inference_queue_seconds",
    "Time a request waited for its first batch to start.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
COMPUTE_TIME = Histogram(
    "inference_compute_seconds",
    "Time one graph call (a whole batch) took.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_EXECUTIONS = Counter(
    "inference_batch_executions_total",
    "Graph calls, by batch size (rows).",
    ["model", "batch_size"],
)
BATCH_SECONDS = Counter(
    "inference_batch_seconds_total",
    "Time spent in graph calls, by batch size (rows).",
    ["model", "batch_size"],
)
REQUEST_COMPUTE = Counter(
    "inference_request_compute_seconds_total",
    "Graph time of requests: each graph call's time, once for every request it ran rows of.",
    ["model"],
)
LAST_INFERENCE = Gauge(
    "inference_last_timestamp_seconds",
    "When the model last ran a graph call, in seconds since the epoch.",
    ["model"],
    multiprocess_mode="max",
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "HTTP requests being handled now.",
    multiprocess_mode="livesum",
)
RESIDENT_MEMORY = Gauge(
    "worker_resident_memory_bytes",
    "Resident memory of the worker process, as of its last request (at most 1 s old then).",
    multiprocess_mode="liveall",
)
MODEL_INFO = Gauge(
    "model_info",
    "1 for the model version (and precision) the worker serves, 0 for one it served before.",
    ["model", "version", "precision"],
    multiprocess_mode="liveall",
)
MODEL_RELOADS = Counter(
    "model_reloads_total", "Reloads of a model, by outcome.", ["model", "outcome"]
)
_MEMORY_EVERY_S = 1.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@functools.cache
def _child(metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
    """``metric.labels(*labels)``, looked up once: label sets are few (routes, models,
    statuses), and every request records several metrics."""
    return metric.labels(*labels)


class MetricsObserver:
    """Records every graph call and model change (a
    :class:`service.runtime.registry.ModelObserver`)."""

    def on_serving(self, model: LoadedModel, serving: bool) -> None:
        version = model.manifest.version
        MODEL_INFO.labels(model.name, version, model.precision).set(1 if serving else 0)

    def on_reload(self, name: str, succeeded: bool) -> None:
        MODEL_RELOADS.labels(name, "succeeded" if succeeded else "failed").inc()

    def on_batch(
        self, model: str, rows: int, queue_waits_s: Sequence[float], run_s: float, requests: int
    ) -> None:
        _child(INFERENCE_ROWS, model).inc(rows)
        _child(REQUEST_COMPUTE, model).inc(run_s * requests)
        _child(INFERENCE_EXECUTIONS, model).inc()
        _child(COMPUTE_TIME, model).observe(run_s)
        _child(BATCH_EXECUTIONS, model, str(rows)).inc()
        _child(BATCH_SECONDS, model, str(rows)).inc(run_s)
        _child(LAST_INFERENCE, model).set(time.time())
        for wait in queue_waits_s:
            _child(QUEUE_TIME, model).observe(wait)


def tag_model(name: str) -> None:
    """Label this request's metrics with the model that serves it."""
    g.model_name = name


def install_request_metrics(app: Flask) -> None:
    """Count and time every request of ``app``; keep the in-progress and memory gauges."""
    record_memory()  # the models are loaded: a worker has a value before its first request
    memory_read = [time.monotonic()]  # when this worker last read its memory

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()
        IN_PROGRESS.inc()
        g.metrics_in_progress = True

    @app.after_request
    def record(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            labels = (rule, g.get("model_name", ""), str(response.status_code))
            _child(HTTP_REQUESTS, *labels).inc()
            _child(HTTP_LATENCY, *labels).observe(time.perf_counter() - started)
        now = time.monotonic()
        if now - memory_read[0] >= _MEMORY_EVERY_S:
            memory_read[0] = now
            record_memory()
        return response

    @app.teardown_request
    def end_request(_: BaseException | None) -> None:
        # Always called, whatever happened to the request (after_request may not be).
        if g.pop("metrics_in_progress", False):
            IN_PROGRESS.dec()


def record_memory() -> None:
    """Set ``worker_resident_memory_bytes`` from /proc (nothing where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            RESIDENT_MEMORY.set(int(statm.read().split()[1]) * _PAGE_SIZE)
    except (OSError, ValueError, IndexError):
        pass


def record_grpc_call(method: str, model: str, code: str, seconds: float) -> None:
    """Count and time one gRPC call."""
    _child(GRPC_REQUESTS, method, model, code).inc()
    _child(GRPC_LATENCY, method, model, code).observe(seconds)


def _registry() -> CollectorRegistry:
    """Every worker's metrics (under gunicorn), or this process's."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def samples() -> Iterator[Sample]:
    """Every sample of every metric, as ``/metrics`` shows them."""
    for metric in _registry().collect():
        yield from metric.samples


def render_metrics() -> Response:
    """The Prometheus text exposition of every worker's metrics (or this process's)."""
    return Response(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
