"""GET /metrics in one process: request, inference, batch and timing metrics move as requests
arrive. (Agreement across gunicorn workers is in test_gunicorn_production.py.)"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import REGISTRY_KEY
from service.metrics import MetricsObserver, render_metrics
from tests.service.metrics_text import sample_values, value
from tests.service.test_reload import set_version

SENTIMENT = {"endpoint": "/v1/sentiment", "model": "sentiment"}


def scrape(client: FlaskClient) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return sample_values(response.get_data(as_text=True))


def test_request_and_inference_metrics_move_with_requests(ner_app: Flask) -> None:
    client = ner_app.test_client()
    before = scrape(client)

    for _ in range(3):
        assert client.post("/v1/sentiment", json={"texts": ["good", "bad"]}).status_code == 200
    assert client.post("/v1/sentiment", json={"texts": []}).status_code == 422
    assert client.post("/v2/models/ner/infer", json={"inputs": "x"}).status_code == 400
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("http_requests_total", **SENTIMENT, status="200") == 3
    assert delta("http_request_duration_seconds_count", **SENTIMENT, status="200") == 3
    assert delta("http_request_duration_seconds_sum", **SENTIMENT, status="200") > 0
    # the endpoint chose the model before the body failed validation
    assert delta("http_requests_total", **SENTIMENT, status="422") == 1
    ner_infer = {"endpoint": "/v2/models/<name>/infer", "model": "ner", "status": "400"}
    assert delta("http_requests_total", **ner_infer) == 1
    assert delta("inference_rows_total", model="sentiment") == 6
    executions = delta("inference_executions_total", model="sentiment")
    assert 1 <= executions <= 3
    assert delta("inference_compute_seconds_count", model="sentiment") == executions
    assert delta("inference_queue_seconds_count", model="sentiment") == 3  # one per request


def test_an_unknown_route_is_one_label_not_one_per_path(client: FlaskClient) -> None:
    before = scrape(client)
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    after = scrape(client)

    labels = {"endpoint": "unmatched", "model": "", "status": "404"}
    assert (
        value(after, "http_requests_total", **labels)
        - value(before, "http_requests_total", **labels)
        == 2
    )


def test_a_reload_of_an_unknown_name_adds_no_model_label(admin_app_factory, tiny_model_dir) -> None:
    client = admin_app_factory(tiny_model_dir).test_client()
    before = scrape(client)  # the counters are the process's: other tests' requests are in
    for name in ("nosuch1", "nosuch2"):
        assert client.post(f"/v1/models/{name}/reload").status_code == 404
    after = scrape(client)

    labels = {"endpoint": "/v1/models/<name>/reload", "model": "", "status": "404"}
    assert (
        value(after, "http_requests_total", **labels)
        - value(before, "http_requests_total", **labels)
        == 2
    )
    assert all("nosuch" not in str(key) for key in after), "a model label per unknown name"


def _now(name: str) -> float:
    """A metric's value as /metrics would show it, read without a request of its own."""
    return value(sample_values(render_metrics().get_data(as_text=True)), name)


def test_requests_in_progress_are_counted_while_they_run(app: Flask, monkeypatch) -> None:
    session = app.extensions[REGISTRY_KEY].models["sentiment"].predictor.session
    before = _now("http_requests_in_progress")
    during = []
    run = session.run

    def counting_run(feeds):
        during.append(_now("http_requests_in_progress"))
        return run(feeds)

    monkeypatch.setattr(session, "run", counting_run)
    client = app.test_client()
    assert client.post("/v1/sentiment", json={"texts": ["good"]}).status_code == 200
    assert client.post("/v1/sentiment", json={"texts": []}).status_code == 422

    assert during == [before + 1]
    assert _now("http_requests_in_progress") == before  # failed requests end too


def test_the_worker_s_memory_is_reported(app: Flask) -> None:
    resident = _now("worker_resident_memory_bytes")
    assert 20 * 2**20 < resident < 64 * 2**30  # a Python process with ONNX Runtime loaded


def test_served_versions_and_reloads_are_reported(admin_app_factory, own_model_dir) -> None:
    client = admin_app_factory(own_model_dir).test_client()
    served = {"model": "sentiment", "precision": "fp32"}
    before = scrape(client)
    set_version(own_model_dir / "sentiment", "3.1.4-metrics")
    assert client.post("/v1/models/sentiment/reload").status_code == 200
    (own_model_dir / "sentiment" / "vocab.json").write_text("[]", "utf-8")
    assert client.post("/v1/models/sentiment/reload").status_code == 409
    after = scrape(client)

    def info(version: str) -> float:
        return after[("model_info", frozenset({"version": version, **served}.items()))]

    assert (info("0.0.1-test"), info("3.1.4-metrics")) == (0, 1)
    for outcome in ("succeeded", "failed"):
        labels = {"model": "sentiment", "outcome": outcome}
        reloads = value(after, "model_reloads_total", **labels)
        assert reloads - value(before, "model_reloads_total", **labels) == 1


def test_a_graph_call_shared_by_requests_counts_for_each_of_them(app: Flask) -> None:
    # Triton's compute_infer is per request: a call that ran rows of two requests took that
    # long for both, so the statistics' per-request compute time is not undercounted.
    def compute() -> float:
        metrics = sample_values(render_metrics().get_data(as_text=True))
        return value(metrics, "inference_request_compute_seconds_total", model="shared")

    before = compute()
    MetricsObserver().on_batch("shared", rows=3, queue_waits_s=[0.0, 0.0], run_s=0.25, requests=2)

    assert compute() - before == pytest.approx(0.5)
