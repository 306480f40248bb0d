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
TEXTS = ["a man walks .", "two dogs run in the snow ."]
SENTENCES = "A man walks. Two dogs run. A child sleeps."  # one text, three sentences


def inference_count(app: Flask, model: str) -> int:
    stats = app.test_client().get(f"/v2/models/{model}/stats").get_json()
    return stats["model_stats"][0]["inference_count"]


def post(app: Flask, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.test_client().post(ENDPOINTS[model], json=body)
    return response.status_code, response.get_json()


def translation_tokens(app: Flask, body: dict[str, Any]) -> int:
    """Every beam of every sentence reads its source and may write up to its most target
    subwords; the attention has a weight per source and target subword of each text."""
    translator = app.extensions["service.registry"].models["translation"].predictor
    total = 0
    for text in body["texts"]:
        rows = translator.make_job(text, body.get("beam_size")).rows
        total += sum(row.beam_size * (len(row.ids) + row.max_length) for row in rows)
        if body.get("return_attention"):
            total += sum(len(row.ids) for row in rows) * sum(row.max_length for row in rows)
    return total


@pytest.mark.parametrize(
    ("model", "body", "tokens"),
    [
        ("sentiment", {"texts": ["good movie", "a bad , bad film"]}, 7),  # words
        ("ner", {"texts": ["John lives in Paris .", "Mary works ."]}, 8),
        ("ner", {"tokens": [["John", "lives", "in", "Paris"], ["Mary"]]}, 5),
        ("translation", {"texts": TEXTS, "beam_size": 1}, None),
        ("translation", {"texts": TEXTS, "beam_size": 4}, None),
        ("translation", {"texts": TEXTS, "beam_size": 3, "return_attention": True}, None),
        ("translation", {"texts": [SENTENCES], "beam_size": 2, "return_attention": True}, None),
    ],
)
def test_a_request_over_the_budget_is_refused_before_any_graph_runs(
    app_factory, tiny_ner_model_dir: Path, tiny_translation_model_dir: Path, model, body, tokens
) -> None:
    folder = tiny_translation_model_dir if model == "translation" else tiny_ner_model_dir
    if tokens is None:
        tokens = translation_tokens(app_factory(folder), body)
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


def test_the_attention_of_many_sentences_counts_as_the_whole_text_s(
    app_factory, tiny_translation_model_dir: Path
) -> None:
    """A text's attention is one matrix over all its sentences' subwords, mostly zeros when
    they are many: a request asking for it is counted by its size, not by the sentences'
    blocks, so that many short sentences cannot make it as large as the memory."""
    body = {"texts": [" ".join(["A man walks."] * 35)], "beam_size": 1}
    tokens = translation_tokens(app_factory(tiny_translation_model_dir), body)
    app = app_factory(tiny_translation_model_dir, max_request_tokens=tokens * 10)

    assert post(app, "translation", body)[0] == 200
    status, answer = post(app, "translation", body | {"return_attention": True})
    assert status == 413
    assert answer["error"]["details"]["tokens"] > 35 * tokens  # 35 x 35 blocks' worth


def test_counting_stops_at_the_first_text_past_the_limit(
    app_factory, tiny_ner_model_dir: Path
) -> None:
    app = app_factory(tiny_ner_model_dir, max_request_tokens=12)

    status, answer = post(app, "ner", {"texts": ["a b c d e"] * 50})

    assert status == 413
    assert answer["error"]["details"]["tokens"] == 15  # 3 of the 50 texts counted
    assert "holds at least 15 tokens for the ner model" in answer["error"]["message"]


def test_the_limit_holds_over_v2_and_grpc(app_factory, tiny_model_dir: Path) -> None:
    app = app_factory(tiny_model_dir, max_request_tokens=3)
    before = inference_count(app, "sentiment")
    text = {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good movie", "so bad"]}

    response = app.test_client().post("/v2/models/sentiment/infer", json={"inputs": [text]})
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
