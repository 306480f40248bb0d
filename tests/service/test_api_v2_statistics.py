"""The statistics extension (``GET /v2/models/.../stats``, gRPC ``ModelStatistics``): what the
service did with each model, from the same counters as ``/metrics``."""

from __future__ import annotations

import time

import pytest
import tritonclient.http as triton
from flask.testing import FlaskClient

from service.api.v2_statistics import INFER_ENDPOINTS
from tests.service.live_server import serving_in_thread
from tests.service.test_api_v2 import VERSION, infer, text_input


def stats(client: FlaskClient, model: str = "sentiment") -> dict:
    response = client.get(f"/v2/models/{model}/stats")
    assert response.status_code == 200, response.get_json()
    (entry,) = response.get_json()["model_stats"]
    return entry


def grew(after: dict, before: dict, *path: str) -> int:
    for key in path:
        after, before = after[key], before[key]
    return after - before


def test_requests_rows_and_graph_calls_are_counted(ner_client: FlaskClient) -> None:
    before = stats(ner_client)
    started_ms = time.time() * 1000

    texts = ["good", "bad", "a fine film " * 20]  # the long one runs in a call of its own
    assert ner_client.post("/v1/sentiment", json={"texts": texts}).status_code == 200
    status, _ = infer(ner_client, "sentiment", {"inputs": [text_input(["a great movie"])]})
    assert status == 200
    status, _ = infer(ner_client, "sentiment", {"inputs": [text_input([""])]})  # no text: 400
    assert status == 400
    assert ner_client.post("/v1/sentiment", json={"texts": []}).status_code == 422
    after = stats(ner_client)

    assert (after["name"], after["version"]) == ("sentiment", VERSION)
    assert grew(after, before, "inference_count") == 4  # texts run
    assert grew(after, before, "inference_stats", "success", "count") == 2
    assert grew(after, before, "inference_stats", "fail", "count") == 2  # /v2 and /v1 alike
    assert grew(after, before, "inference_stats", "success", "ns") > 0
    calls = grew(after, before, "execution_count")
    assert calls == 3  # short texts together, the long one alone; then the /v2 request
    # Triton's compute_infer is per request; these requests came one at a time, sharing no call.
    assert grew(after, before, "inference_stats", "compute_infer", "count") == 2
    batch_ns = sum(b["compute_infer"]["ns"] for b in after["batch_stats"]) - sum(
        b["compute_infer"]["ns"] for b in before["batch_stats"]
    )
    compute_ns = grew(after, before, "inference_stats", "compute_infer", "ns")
    assert batch_ns > 0 and abs(compute_ns - batch_ns) <= 10  # rounding to ns per sum
    assert grew(after, before, "inference_stats", "queue", "count") == 2  # one per request
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert sum(size * n for size, n in sizes.items()) == after["inference_count"]
    assert sum(sizes.values()) == after["execution_count"]
    assert started_ms - 1000 <= after["last_inference"] <= time.time() * 1000 + 1000
    for unmeasured in ("compute_input", "compute_output", "cache_hit", "cache_miss"):
        assert after["inference_stats"][unmeasured] == {"count": 0, "ns": 0}


def test_every_route_that_runs_a_model_is_counted(ner_app) -> None:
    rules = {rule.rule for rule in ner_app.url_map.iter_rules() if "POST" in rule.methods}

    assert rules >= INFER_ENDPOINTS
    # The others run no model's graph on a request's texts.
    assert rules - INFER_ENDPOINTS == {"/v1/models/<name>/reload", "/v2/repository/index"}


def test_one_model_s_requests_do_not_count_for_another(ner_client: FlaskClient) -> None:
    before = stats(ner_client, "ner")

    ner_client.post("/v1/sentiment", json={"texts": ["good"]})

    assert stats(ner_client, "ner") == before


def test_every_model_without_a_name_and_errors_by_name(ner_client: FlaskClient) -> None:
    every = ner_client.get("/v2/models/stats").get_json()["model_stats"]
    one = ner_client.get(f"/v2/models/sentiment/versions/{VERSION}/stats")

    assert [m["name"] for m in every] == ["ner", "sentiment"]
    assert one.status_code == 200
    for path in ("/v2/models/nope/stats", "/v2/models/sentiment/versions/9/stats"):
        response = ner_client.get(path)
        assert response.status_code == 404 and "error" in response.get_json()


@pytest.mark.parametrize("path", ["/v2/models/stats", "/v2/models/sentiment/stats"])
def test_statistics_need_a_key_when_keys_are_set(app_factory, tiny_ner_model_dir, path) -> None:
    client = app_factory(tiny_ner_model_dir, api_keys=("k" * 16,)).test_client()

    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {'k' * 16}"}).status_code == 200


def test_tritonclient_reads_the_statistics(ner_app) -> None:
    with serving_in_thread(ner_app) as url:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            answer = client.get_inference_statistics("sentiment")
            every = client.get_inference_statistics()
        finally:
            client.close()

    assert [m["name"] for m in answer["model_stats"]] == ["sentiment"]
    assert {m["name"] for m in every["model_stats"]} == {"ner", "sentiment"}
