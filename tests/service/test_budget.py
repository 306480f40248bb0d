"""MAX_REQUEST_TOKENS: a request that would make a model process more tokens than that is a
413 naming the count and the limit, over /v1, /v2 and gRPC, before any graph runs; one within
it is answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from flask import Flask

from service.grpc_api.server import start
from tests.service.test_grpc import infer_request, rpc_error

ENDPOINTS = {"sentiment": "/v1/sentiment", "ner": "/v1/ner", "translation": "/v1/translate"}


def inference_count(app: Flask, model: str) -> int:
    stats = app.test_client().get(f"/v2/models/{model}/stats").get_json()
    return stats["model_stats"][0]["inference_count"]


def post(app: Flask, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.test_client().post(ENDPOINTS[model], json=body)
    return response.status_code, response.get_json()


def counted(app: Flask, model: str, body: dict[str, Any]) -> int:
    """The tokens the service counts for ``body`` (it refuses it under a budget of one)."""
    status, answer = post(app, model, body)
    assert status == 413, answer
    return answer["error"]["details"]["tokens"]


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("sentiment", {"texts": ["good movie", "a bad , bad film"]}),
        ("ner", {"texts": ["John lives in Paris .", "Mary works for Acme ."]}),
        ("ner", {"tokens": [["John", "lives", "in", "Paris"], ["Mary"]]}),
        ("translation", {"texts": ["a man walks .", "two dogs run in the snow ."]}),
        ("translation", {"texts": ["a man walks ."], "beam_size": 3, "return_attention": True}),
    ],
)
def test_a_request_over_the_budget_is_refused_before_any_graph_runs(
    app_factory, tiny_ner_model_dir: Path, tiny_translation_model_dir: Path, model, body
) -> None:
    folder = tiny_translation_model_dir if model == "translation" else tiny_ner_model_dir
    tokens = counted(app_factory(folder, max_request_tokens=1), model, body)
    over = app_factory(folder, max_request_tokens=tokens - 1)
    before = inference_count(over, model)  # the metrics are the process's, shared by apps

    status, answer = post(over, model, body)

    assert status == 413
    assert answer["error"]["code"] == "too_many_tokens"
    assert answer["error"]["details"] == {"tokens": tokens, "max_request_tokens": tokens - 1}
    assert f"holds {tokens:,} tokens for the {model} model" in answer["error"]["message"]
    assert "MAX_REQUEST_TOKENS" in answer["error"]["message"]
    assert inference_count(over, model) == before
    assert post(app_factory(folder, max_request_tokens=tokens), model, body)[0] == 200


def test_sentiment_and_ner_count_words(app_factory, tiny_ner_model_dir: Path) -> None:
    app = app_factory(tiny_ner_model_dir, max_request_tokens=1)

    assert counted(app, "sentiment", {"texts": ["good movie", "a bad , bad film"]}) == 7
    assert counted(app, "ner", {"texts": ["John lives in Paris .", "Mary works ."]}) == 8
    assert counted(app, "ner", {"tokens": [["John", "lives", "in", "Paris"], ["Mary"]]}) == 5


def test_translation_counts_every_beam_and_the_attention_asked_for(
    app_factory, tiny_translation_model_dir: Path
) -> None:
    """Each beam reads the source and may write up to the text's most target subwords; the
    attention has a weight per source and target subword."""
    app = app_factory(tiny_translation_model_dir, max_request_tokens=1)
    translator = app.extensions["service.registry"].models["translation"].predictor
    texts = ["a man walks .", "two dogs run in the snow ."]
    rows = [translator.make_row(text) for text in texts]
    greedy = sum(len(row.ids) + row.max_length for row in rows)
    attention = sum(len(row.ids) * row.max_length for row in rows)

    assert counted(app, "translation", {"texts": texts, "beam_size": 1}) == greedy
    assert counted(app, "translation", {"texts": texts, "beam_size": 4}) == 4 * greedy
    with_attention = {"texts": texts, "beam_size": 4, "return_attention": True}
    assert counted(app, "translation", with_attention) == 4 * greedy + attention


def test_the_limit_holds_over_v2_and_grpc(app_factory, tiny_model_dir: Path) -> None:
    app = app_factory(tiny_model_dir, max_request_tokens=3)
    before = inference_count(app, "sentiment")
    text = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good movie", "so bad"]}
    body = {"inputs": [text]}

    response = app.test_client().post("/v2/models/sentiment/infer", json=body)
    assert response.status_code == 413
    assert "holds 4 tokens for the sentiment model" in response.get_json()["error"]

    server, port = start(app, 0)
    try:
        error = rpc_error(f"127.0.0.1:{port}", infer_request([b"good movie", b"so bad"]))
    finally:
        server.stop(None).wait()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds 4 tokens for the sentiment model" in error.details()
    assert inference_count(app, "sentiment") == before
