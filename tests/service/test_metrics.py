"""GET /metrics in one process: request, inference, batch and timing metrics move as requests
arrive. (Agreement across gunicorn workers is in test_gunicorn_observability.py.)"""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from tests.service.metrics_text import sample_values, value

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
