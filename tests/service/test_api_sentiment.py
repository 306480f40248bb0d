"""POST /v1/sentiment through Flask's test client, on the tiny artifact."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import logging
import tracemalloc
import zlib
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import REGISTRY_KEY

URL = "/v1/sentiment"


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# --- 200 -----------------------------------------------------------------------------------


def test_results_come_back_in_request_order(client: FlaskClient) -> None:
    texts = ["a great movie", "an awful movie", "good good good", "bad", "the movie"]
    response = client.post(URL, json={"texts": texts})

    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == {"name": "sentiment", "version": "0.0.1-test"}
    labels = [result["label"] for result in body["results"]]
    assert labels == ["positive", "negative", "positive", "negative", "negative"]


def test_scores_are_probabilities_and_label_is_their_argmax(client: FlaskClient) -> None:
    response = client.post(URL, json={"texts": ["great", "awful movie", "the"]})

    for result in response.get_json()["results"]:
        assert set(result["scores"]) == {"negative", "positive"}
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-6)
        assert result["label"] == max(result["scores"], key=result["scores"].get)
        assert result["score"] == result["scores"][result["label"]]
        assert result["truncated"] is False


def test_text_longer_than_max_tokens_is_truncated_and_flagged(client: FlaskClient) -> None:
    # The tiny model reads 8 tokens: the trailing "awful"s are cut, so the text stays positive.
    long_text = "great " + "the " * 7 + "awful " * 20
    response = client.post(URL, json={"texts": [long_text, "great"]})

    assert response.status_code == 200
    first, second = response.get_json()["results"]
    assert first["truncated"] is True
    assert first["label"] == "positive"
    assert second["truncated"] is False


@pytest.mark.parametrize(("words", "truncated"), [(7, False), (8, False), (9, True)])
def test_truncated_means_words_were_cut(client: FlaskClient, words: int, truncated: bool) -> None:
    # The tiny model reads 8 tokens: a text of exactly 8 loses nothing.
    text = " ".join(["great"] + ["the"] * (words - 1))
    response = client.post(URL, json={"texts": [text]})

    assert response.get_json()["results"][0]["truncated"] is truncated


def test_content_type_is_not_required(client: FlaskClient) -> None:
    response = client.post(URL, data=json.dumps({"texts": ["good"]}), content_type="text/plain")

    assert response.status_code == 200


# --- 400 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"texts": ["good"', "not valid JSON"),
        ("", "body is empty"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        ('["good"]', "must be a JSON object"),
        ('"good"', "must be a JSON object"),
        ("null", "must be a JSON object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    client: FlaskClient, body: str | bytes, expected: str
) -> None:
    response = client.post(URL, data=body, content_type="application/json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_request"
    assert expected in error["message"]


# --- 422 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "texts", "field required"),
        ({"text": ["good"]}, "texts", "field required"),
        ({"texts": "good"}, "texts", "input should be a valid list, got a string"),
        ({"texts": None}, "texts", "got null"),
        ({"texts": []}, "texts", "at least 1 text is required"),
        ({"texts": ["good"] * 101}, "texts", "at most 100 texts per request, got 101"),
        ({"texts": ["good", ""]}, "texts[1]", "text is empty after stripping whitespace"),
        ({"texts": ["good", "bad", " \n\t "]}, "texts[2]", "empty after stripping whitespace"),
        ({"texts": ["x" * 501]}, "texts[0]", "text has 501 characters, at most 500 are allowed"),
        ({"texts": ["good", 3]}, "texts[1]", "input should be a valid string, got a number"),
        ({"texts": [["good"]]}, "texts[0]", "got an array"),
        ({"texts": ["good", "bad \ud83d"]}, "texts[1]", "text contains an unpaired UTF-16"),
        ({"texts": ["good"], "model": "x"}, "model", "unknown field"),
    ],
)
def test_invalid_requests_are_a_422_naming_the_field(
    client: FlaskClient, body: dict, field: str, message: str
) -> None:
    response = client.post(URL, json=body)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert error["message"].startswith(f"{field}: ")
    assert message in error["message"]
    assert error["details"][0]["field"] == field


def test_every_invalid_text_is_listed(client: FlaskClient) -> None:
    response = client.post(URL, json={"texts": ["", "good", 7, "  "]})

    error = error_of(response)
    assert [d["field"] for d in error["details"]] == ["texts[0]", "texts[2]", "texts[3]"]
    assert "(and 2 more problem(s), see details)" in error["message"]


def test_text_at_the_character_limit_is_accepted(client: FlaskClient) -> None:
    response = client.post(URL, json={"texts": ["x" * 500]})

    assert response.status_code == 200
    assert response.get_json()["results"][0]["truncated"] is False


def test_as_many_texts_as_the_limit_are_accepted(client: FlaskClient) -> None:
    response = client.post(URL, json={"texts": ["good"] * 100})  # MAX_TEXTS_PER_REQUEST

    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 100


# --- 413 -----------------------------------------------------------------------------------


def test_a_body_over_max_body_bytes_is_a_413(client: FlaskClient) -> None:
    # 17 KiB against the test limit of 16 KiB, checked before the body is parsed.
    response = client.post(URL, json={"texts": ["good " * 20] * 170})

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large"
    assert "16384 bytes" in error["message"]


def test_a_chunked_body_over_max_body_bytes_is_a_413_not_a_cut_one(client: FlaskClient) -> None:
    """Sent without Content-Length (chunked), the body is not cut at the limit and parsed."""
    body = json.dumps({"texts": ["good " * 20] * 170}).encode()

    def chunked(data: bytes):
        return client.post(
            URL,
            input_stream=io.BytesIO(data),
            headers={"Transfer-Encoding": "chunked"},  # werkzeug then sends no Content-Length
            environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets for chunked
        )

    response = chunked(body)
    assert response.request.content_length is None
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert chunked(json.dumps({"texts": ["good"]}).encode()).status_code == 200


# --- compressed bodies (Content-Encoding) ------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_body_is_read(client: FlaskClient, encoding: str) -> None:
    body = json.dumps({"texts": ["a good film", "a bad film"]}).encode()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)

    response = client.post(URL, data=packed, headers={"Content-Encoding": encoding})

    assert response.status_code == 200
    assert response.get_json() == client.post(URL, data=body).get_json()


def test_a_gzip_body_of_several_members_is_read_whole(client: FlaskClient) -> None:
    body = json.dumps({"texts": ["a good film", "a bad film"]}).encode()
    packed = gzip.compress(body[:10]) + gzip.compress(body[10:])

    response = client.post(URL, data=packed, headers={"Content-Encoding": "x-gzip"})

    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 2


def test_identity_is_no_encoding(client: FlaskClient) -> None:
    response = client.post(URL, json={"texts": ["good"]}, headers={"Content-Encoding": "identity"})

    assert response.status_code == 200


def test_a_body_of_64_gzip_members_is_read_and_one_of_65_refused(client: FlaskClient) -> None:
    body = json.dumps({"texts": ["a good film"] * 8}).encode()
    cuts = [round(i * len(body) / 64) for i in range(65)]
    members = [gzip.compress(body[a:b]) for a, b in itertools.pairwise(cuts)]
    headers = {"Content-Encoding": "gzip"}

    read = client.post(URL, data=b"".join(members), headers=headers)
    refused = client.post(URL, data=b"".join(members) + gzip.compress(b" "), headers=headers)

    assert read.status_code == 200
    assert refused.status_code == 400
    assert "more than 64 gzip streams" in error_of(refused)["message"]


def test_a_compression_bomb_is_refused_without_inflating_it(client: FlaskClient) -> None:
    # 10 MB of zeros in 10 KB: inflated no further than MAX_BODY_BYTES + 1 before the 413.
    packed = gzip.compress(b"0" * 10_000_000)
    assert len(packed) < 16 * 1024

    tracemalloc.start()
    try:
        response = client.post(URL, data=packed, headers={"Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert peak < 2_000_000


def test_a_body_over_max_body_bytes_once_decompressed_is_a_413(client: FlaskClient) -> None:
    body = json.dumps({"texts": ["good"] * 10_000}).encode()  # 90 KB, 300 bytes compressed
    packed = gzip.compress(body)

    response = client.post(URL, data=packed, headers={"Content-Encoding": "gzip"})

    assert len(packed) < 16 * 1024 < len(body)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("encoding", "data", "status", "message"),
    [
        ("br", b"...", 415, "Content-Encoding 'br' is not supported"),
        ("gzip", b"not gzip at all", 400, "request body is not valid gzip data"),
        ("gzip", gzip.compress(b'{"texts": ["good"]}')[:-12], 400, "it ends too early"),
        ("gzip", gzip.compress(b'{"texts": ["good"]}') + b"junk", 400, "not valid gzip data"),
        # A thousand empty streams: each copied what followed it, a cost of size squared.
        ("deflate", zlib.compress(b"") * 1000, 400, "more than 64 deflate streams"),
    ],
)
def test_an_unreadable_compressed_body_says_why(client, encoding, data, status, message) -> None:
    response = client.post(URL, data=data, headers={"Content-Encoding": encoding})

    assert response.status_code == status
    assert message in error_of(response)["message"]


# --- 404 / 405 -----------------------------------------------------------------------------


def test_an_unknown_route_is_a_json_404(client: FlaskClient) -> None:
    response = client.post("/v1/sentiments", json={"texts": ["good"]})

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert "POST /v1/sentiments" in error["message"]


def test_a_wrong_method_is_a_json_405_listing_the_allowed_ones(client: FlaskClient) -> None:
    response = client.get(URL)

    assert response.status_code == 405
    error = error_of(response)
    assert error["code"] == "method_not_allowed"
    assert "POST" in error["details"]["allowed_methods"]
    assert response.headers["Allow"]


# --- 503 / 500 -----------------------------------------------------------------------------


def test_no_loaded_sentiment_model_is_a_503(app_factory, tmp_path: Path) -> None:
    client = app_factory(tmp_path / "empty").test_client()

    response = client.post(URL, json={"texts": ["good"]})

    assert response.status_code == 503
    assert error_of(response)["code"] == "not_ready"


@pytest.mark.parametrize("where", ["predictor", "graph"])
def test_an_unexpected_failure_is_a_json_500_with_its_trace_logged_once(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog, where: str
) -> None:
    """In the request's thread (the predictor) or in a batch (the graph call), which the
    batcher fails for every request that had rows in it."""
    predictor = app.extensions[REGISTRY_KEY].models["sentiment"].predictor
    target, name = (
        (predictor, "predict_batch") if where == "predictor" else (predictor.session, "run")
    )

    def explode(_):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(target, name, explode)
    with caplog.at_level(logging.ERROR, logger="service"):
        response = client.post(URL, json={"texts": ["good"]})

    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret internal detail" in caplog.text  # the trace is in the log instead, once
    assert caplog.text.count("Traceback") == 1
