"""POST /v1/ner through Flask's test client, on the tiny NER artifact (``tiny_ner_artifact.py``),
whose tags follow a word table, so the expected entities are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service.tiny_artifact import build_tiny_artifact
from tests.service.tiny_ner_artifact import (
    TINY_NER_MAX_TOKENS,
    TINY_NER_TAGS,
    TINY_NER_VERSION,
    build_tiny_ner_artifact,
)

URL = "/v1/ner"
SENTENCE = "EU rejects German call to boycott British lamb."
SENTENCE_TOKENS = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def tag(client: FlaskClient, body: dict) -> list[dict]:
    """POST ``body``, check the 200 and the response shape, return the results."""
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.get_json()
    payload = response.get_json()
    assert payload["model"] == {"name": "ner", "version": TINY_NER_VERSION}
    for result in payload["results"]:
        assert set(result) == {"entities", "tokens"}
        assert all(set(e) == {"type", "text", "start", "end", "score"} for e in result["entities"])
        assert all(set(t) == {"text", "start", "end", "tag", "score"} for t in result["tokens"])
    return payload["results"]


def entities(result: dict) -> list[tuple[str, str]]:
    return [(e["type"], e["text"]) for e in result["entities"]]


def assert_offsets_exact(text: str, result: dict) -> None:
    """Every entity and token is ``text[start:end]``; the tokens hold every visible character."""
    for item in result["entities"] + result["tokens"]:
        assert text[item["start"] : item["end"]] == item["text"], item
    assert "".join(t["text"] for t in result["tokens"]) == "".join(text.split())
    starts = [t["start"] for t in result["tokens"]]
    assert starts == sorted(starts)


# --- 200: raw texts ------------------------------------------------------------------------


def test_a_text_is_tagged_with_entities_tokens_and_offsets(ner_client: FlaskClient) -> None:
    (result,) = tag(ner_client, {"texts": [SENTENCE]})

    assert [(e["type"], e["text"], e["start"], e["end"]) for e in result["entities"]] == [
        ("ORG", "EU", 0, 2),
        ("MISC", "German", 11, 17),
        ("MISC", "British", 34, 41),
    ]
    assert [t["text"] for t in result["tokens"]] == SENTENCE_TOKENS
    assert [t["tag"] for t in result["tokens"]] == [
        "B-ORG",
        "O",
        "B-MISC",
        "O",
        "O",
        "O",
        "B-MISC",
        "O",
        "O",
    ]
    first = result["tokens"][0]
    assert (first["text"], first["start"], first["end"], first["tag"]) == ("EU", 0, 2, "B-ORG")
    assert_offsets_exact(SENTENCE, result)


def test_multi_token_entities_are_one_entity(ner_client: FlaskClient) -> None:
    text = "Acme Corp said Peter Blackburn visited New York."
    (result,) = tag(ner_client, {"texts": [text]})

    assert entities(result) == [
        ("ORG", "Acme Corp"),
        ("PER", "Peter Blackburn"),
        ("LOC", "New York"),
    ]
    tags = [t["tag"] for t in result["tokens"]]
    assert tags[:2] == ["B-ORG", "I-ORG"]


def test_results_come_back_in_request_order(ner_client: FlaskClient) -> None:
    # Different lengths: the predictor runs sentences sorted by length, the answer must not be.
    texts = [
        "Peter Blackburn visited New York , Brussels and the EU " + "said " * 20 + ".",
        "Zürich",
        SENTENCE,
        "the lamb .",
        "NATO said Acme Corp visited 東京.",
    ]
    results = tag(ner_client, {"texts": texts})

    assert [entities(r) for r in results] == [
        [("PER", "Peter Blackburn"), ("LOC", "New York"), ("LOC", "Brussels"), ("ORG", "EU")],
        [("LOC", "Zürich")],
        [("ORG", "EU"), ("MISC", "German"), ("MISC", "British")],
        [],
        [("ORG", "NATO"), ("ORG", "Acme Corp"), ("LOC", "東京")],
    ]
    alone = [tag(ner_client, {"texts": [text]})[0] for text in texts]
    assert results == alone  # batching with other texts changes nothing


def test_score_is_a_probability_lower_for_a_less_certain_entity(ner_client: FlaskClient) -> None:
    # The tiny model is sure of the known word "EU"; "NATO" is only an ALL-CAPS guess.
    (result,) = tag(ner_client, {"texts": ["EU and NATO said ."]})

    scores = {e["text"]: e["score"] for e in result["entities"]}
    assert set(scores) == {"EU", "NATO"}
    assert all(0.0 < score <= 1.0 for score in scores.values())
    assert scores["NATO"] < scores["EU"]


def tokens_of(entity: dict, result: dict) -> list[dict]:
    return [t for t in result["tokens"] if entity["start"] <= t["start"] < entity["end"]]


@pytest.mark.parametrize(
    "body",
    [
        {"texts": ["EU and NATO said .", "Acme Corp said Peter Blackburn visited New York."]},
        {"texts": ["Peter Blackburn visited Brussels. The EU said no! Zoë Ångström, ZÜRICH."]},
        {"tokens": [["Peter", "BLACKBURN", "of", "Acme", "Corp", "visited", "New", "York"]]},
    ],
)
def test_token_scores_are_probabilities_that_bound_their_entities_scores(
    ner_client: FlaskClient, body: dict
) -> None:
    results = tag(ner_client, body)

    assert any(len(tokens_of(e, r)) > 1 for r in results for e in r["entities"])
    for result in results:
        assert all(0.0 <= t["score"] <= 1.0 for t in result["tokens"])
        for entity in result["entities"]:
            assert all(entity["score"] <= t["score"] for t in tokens_of(entity, result)), entity


def test_a_token_score_is_lower_for_a_less_certain_tag(ner_client: FlaskClient) -> None:
    # As for the entities: "EU" is a known word, "NATO" only an ALL-CAPS guess.
    (result,) = tag(ner_client, {"texts": ["EU and NATO said ."]})

    scores = {t["text"]: t["score"] for t in result["tokens"]}
    assert scores["NATO"] < scores["EU"]


def test_every_sentence_of_a_text_is_tagged(ner_client: FlaskClient) -> None:
    text = "Peter Blackburn visited Brussels. The EU said no! Acme Corp said yes? Zürich."
    (result,) = tag(ner_client, {"texts": [text]})

    assert entities(result) == [
        ("PER", "Peter Blackburn"),
        ("LOC", "Brussels"),
        ("ORG", "EU"),
        ("ORG", "Acme Corp"),
        ("LOC", "Zürich"),
    ]
    assert_offsets_exact(text, result)


def test_a_text_longer_than_max_tokens_is_windowed_not_cut(ner_client: FlaskClient) -> None:
    count = 2 * TINY_NER_MAX_TOKENS + 5
    text = " ".join(["EU"] * count)
    (result,) = tag(ner_client, {"texts": [text]})

    assert len(result["tokens"]) == count
    assert entities(result) == [("ORG", "EU")] * count
    assert_offsets_exact(text, result)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # composed accents
        ("Zoë Ångström visited Zürich.", [("PER", "Zoë Ångström"), ("LOC", "Zürich")]),
        # a decomposed ü (u + U+0308) is part of its word
        ("Peter visited Zu\u0308rich .", [("PER", "Peter"), ("LOC", "Zu\u0308rich")]),
        # CJK, directly followed by punctuation
        (
            "Peter Blackburn visited 東京。EU",
            [("PER", "Peter Blackburn"), ("LOC", "東京"), ("ORG", "EU")],
        ),
        # emoji outside the BMP (one code point each; two UTF-16 units) and a skin-tone modifier
        (
            "🙂🙂 Peter Blackburn 👍🏽 in São Paulo 🇧🇪",
            [("PER", "Peter Blackburn"), ("LOC", "São Paulo")],
        ),
        # tabs, newlines, CRLF and runs of spaces, inside an entity too
        (
            "EU\trejects\n\nGerman   call  to boycott\r\nBritish lamb.\n  New \t York",
            [("ORG", "EU"), ("MISC", "German"), ("MISC", "British"), ("LOC", "New \t York")],
        ),
        # leading and trailing whitespace
        ("  \n EU  \t", [("ORG", "EU")]),
    ],
)
def test_offsets_are_exact_for_any_unicode_and_whitespace(
    ner_client: FlaskClient, text: str, expected: list[tuple[str, str]]
) -> None:
    (result,) = tag(ner_client, {"texts": [text]})

    assert entities(result) == expected
    assert_offsets_exact(text, result)


def test_offsets_count_code_points(ner_client: FlaskClient) -> None:
    (result,) = tag(ner_client, {"texts": ["🙂🙂 Peter"]})

    assert result["entities"][0]["start"] == 3  # not 5, as UTF-16 would count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["EU", "New York", "Zoë", "Ångström", "東京", " ", "\t", "\n"]),
            st.text(max_size=8),
        ),
        max_size=12,
    )
    .map("".join)
    .filter(str.strip)
)
def test_offsets_are_exact_for_random_text(ner_app: Flask, text: str) -> None:
    (result,) = tag(ner_app.test_client(), {"texts": [text]})

    assert_offsets_exact(text, result)


# --- 200: pre-tokenized sentences ----------------------------------------------------------


def test_tokens_are_tagged_with_offsets_into_the_space_joined_text(
    ner_client: FlaskClient,
) -> None:
    (result,) = tag(ner_client, {"tokens": [SENTENCE_TOKENS]})

    joined = " ".join(SENTENCE_TOKENS)
    assert [t["text"] for t in result["tokens"]] == SENTENCE_TOKENS
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in result["entities"]] == [
        ("ORG", "EU", 0, 2),
        ("MISC", "German", 11, 17),
        ("MISC", "British", 34, 41),
    ]
    last = result["tokens"][-1]
    assert (last["text"], last["start"], last["end"], last["tag"]) == (".", 47, 48, "O")
    assert_offsets_exact(joined, result)


def test_tokens_are_taken_as_given_and_as_one_sentence(ner_client: FlaskClient) -> None:
    # The service would split "U.S.-based" and end a sentence after "."; given tokens stay whole.
    sentence = ["Zoë", "Ångström", "!", "Peter", "Blackburn", "U.S.-based", "東京", "🙂"]
    (result,) = tag(ner_client, {"tokens": [sentence]})

    assert [t["text"] for t in result["tokens"]] == sentence
    assert entities(result) == [
        ("PER", "Zoë Ångström"),
        ("PER", "Peter Blackburn"),
        ("LOC", "東京"),
    ]
    assert_offsets_exact(" ".join(sentence), result)


def test_tokens_and_texts_tag_alike(ner_client: FlaskClient) -> None:
    sentences = [SENTENCE_TOKENS, ["the", "lamb"], ["New", "York", "said", "NATO"]]
    from_tokens = tag(ner_client, {"tokens": sentences})
    from_texts = tag(ner_client, {"texts": [" ".join(s) for s in sentences]})

    assert from_tokens == from_texts


def test_a_sentence_longer_than_max_tokens_is_windowed(ner_client: FlaskClient) -> None:
    sentence = ["Peter", "Blackburn", *["said"] * (TINY_NER_MAX_TOKENS + 3), "EU"]
    (result,) = tag(ner_client, {"tokens": [sentence]})

    assert [t["text"] for t in result["tokens"]] == sentence
    assert entities(result) == [("PER", "Peter Blackburn"), ("ORG", "EU")]


# --- 400 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"tokens": [["EU"]', "not valid JSON"),
        ("", "body is empty"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        ('[["EU"]]', "must be a JSON object"),
        ('"EU"', "must be a JSON object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    ner_client: FlaskClient, body: str | bytes, expected: str
) -> None:
    response = ner_client.post(URL, data=body, content_type="application/json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "bad_request"
    assert expected in error["message"]


# --- 422 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        # texts, as in /v1/sentiment
        ({"texts": "EU"}, "texts", "input should be a valid list, got a string"),
        ({"texts": None}, "texts", "input should be a valid list, got null"),
        ({"texts": []}, "texts", "at least 1 text is required, got none"),
        ({"texts": ["EU"] * 101}, "texts", "at most 100 texts per request, got 101"),
        ({"texts": ["EU", ""]}, "texts[1]", "text is empty after stripping whitespace"),
        ({"texts": ["EU", " \n\t "]}, "texts[1]", "text is empty after stripping whitespace"),
        ({"texts": ["x" * 501]}, "texts[0]", "text has 501 characters, at most 500 are allowed"),
        ({"texts": ["EU", 3]}, "texts[1]", "input should be a valid string, got a number"),
        ({"texts": [["EU"]]}, "texts[0]", "input should be a valid string, got an array"),
        # "\ud800" in JSON: echoed back in entities and tokens, it could not be encoded
        ({"texts": ["EU", "Paris \ud800"]}, "texts[1]", "text contains an unpaired UTF-16"),
        # tokens
        ({"tokens": "EU"}, "tokens", "input should be a valid list, got a string"),
        ({"tokens": None}, "tokens", "input should be a valid list, got null"),
        ({"tokens": []}, "tokens", "at least 1 sentence is required, got none"),
        ({"tokens": [["EU"]] * 101}, "tokens", "at most 100 sentences per request, got 101"),
        ({"tokens": ["EU rejects"]}, "tokens[0]", "input should be a valid list, got a string"),
        ({"tokens": [["EU"], []]}, "tokens[1]", "a sentence needs at least 1 token, got none"),
        ({"tokens": [["EU", ""]]}, "tokens[0][1]", "a token must not be empty"),
        ({"tokens": [["EU"], ["a", "b c"]]}, "tokens[1][1]", "must not contain whitespace"),
        ({"tokens": [["EU", "a\tb"]]}, "tokens[0][1]", "must not contain whitespace"),
        ({"tokens": [["EU", " "]]}, "tokens[0][1]", "must not contain whitespace"),
        ({"tokens": [["EU", 3]]}, "tokens[0][1]", "input should be a valid string, got a number"),
        ({"tokens": [["EU", None]]}, "tokens[0][1]", "input should be a valid string, got null"),
        ({"tokens": [["EU", "\udfff"]]}, "tokens[0][1]", "token contains an unpaired UTF-16"),
        (
            {"tokens": [["x" * 250, "y" * 250]]},
            "tokens[0]",
            "the tokens joined by spaces have 501 characters, at most 500 are allowed",
        ),
        # other fields
        ({"texts": ["EU"], "model": "ner"}, "model", "unknown field"),
        ({"text": ["EU"]}, "text", "unknown field"),
    ],
)
def test_invalid_requests_are_a_422_naming_the_field(
    ner_client: FlaskClient, body: dict, field: str, message: str
) -> None:
    response = ner_client.post(URL, json=body)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert error["message"].startswith(f"{field}: ")
    assert message in error["message"]
    assert error["details"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "got"),
    [
        ({}, "got neither"),
        ({"texts": ["EU"], "tokens": [["EU"]]}, "got both"),
    ],
)
def test_exactly_one_of_texts_and_tokens_is_required(
    ner_client: FlaskClient, body: dict, got: str
) -> None:
    response = ner_client.post(URL, json=body)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert error["message"] == (
        "send exactly one of 'texts' (raw strings) or 'tokens' (pre-tokenized sentences); " + got
    )


def test_every_invalid_token_is_listed(ner_client: FlaskClient) -> None:
    response = ner_client.post(URL, json={"tokens": [["", "EU"], ["EU"], ["a b", 7]]})

    error = error_of(response)
    assert [d["field"] for d in error["details"]] == [
        "tokens[0][0]",
        "tokens[2][0]",
        "tokens[2][1]",
    ]
    assert "(and 2 more problem(s), see details)" in error["message"]


def test_input_at_the_character_limit_is_accepted(ner_client: FlaskClient) -> None:
    response = ner_client.post(
        URL, data=json.dumps({"tokens": [["x" * 250, "y" * 249]]}), content_type="text/plain"
    )
    assert response.status_code == 200
    assert tag(ner_client, {"texts": ["x" * 500]})[0]["entities"] == []


# --- 413 -----------------------------------------------------------------------------------


def test_a_body_over_max_body_bytes_is_a_413(ner_client: FlaskClient) -> None:
    # 17 KiB against the test limit of 16 KiB, checked before the body is parsed.
    response = ner_client.post(URL, json={"tokens": [["EU"] * 100] * 30})

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "payload_too_large"
    assert "16384 bytes" in error["message"]


# --- 404 / 405 -----------------------------------------------------------------------------


def test_an_unknown_route_is_a_json_404(ner_client: FlaskClient) -> None:
    response = ner_client.post("/v1/ners", json={"texts": ["EU"]})

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_a_wrong_method_is_a_json_405(ner_client: FlaskClient, method: str) -> None:
    response = getattr(ner_client, method)(URL)

    assert response.status_code == 405
    error = error_of(response)
    assert error["code"] == "method_not_allowed"
    assert "POST" in error["details"]["allowed_methods"]
    assert "POST" in response.headers["Allow"]


# --- 404 / 503 -----------------------------------------------------------------------------


def test_no_ner_model_served_is_a_404_not_a_retry_later(app_factory, tiny_model_dir) -> None:
    client = app_factory(tiny_model_dir).test_client()  # sentiment only, and it loaded

    response = client.post(URL, json={"texts": ["EU"]})

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert error["message"] == "no ner model is served here; loaded: sentiment (MODEL_DIR, MODELS)"
    assert client.get("/v2/health/ready").status_code == 200  # NER is optional


def test_a_broken_ner_model_fails_readiness_and_ner_alone(app_factory, tmp_path: Path) -> None:
    build_tiny_artifact(tmp_path / "sentiment")
    crf = build_tiny_ner_artifact(tmp_path / "ner") / "crf.json"
    crf.write_text(crf.read_text("utf-8").replace("B-PER", "B-XXX"), "utf-8")
    client = app_factory(tmp_path).test_client()

    ready = client.get("/v2/health/ready")
    response = client.post(URL, json={"texts": ["EU"]})

    assert ready.status_code == 503
    assert f"ner: ArtifactError: {crf}: sha256 mismatch" in error_of(ready)["message"]
    assert response.status_code == 503
    assert "sha256 mismatch" in error_of(response)["details"]["failed"]["ner"]
    assert client.post("/v1/sentiment", json={"texts": ["good"]}).status_code == 200


# --- the model is listed -------------------------------------------------------------------


def test_models_and_readiness_list_ner(ner_client: FlaskClient) -> None:
    models = ner_client.get("/v1/models").get_json()["models"]
    ready = ner_client.get("/v2/health/ready")

    assert [m["name"] for m in models] == ["ner", "sentiment"]
    assert models[0] == {
        "name": "ner",
        "version": TINY_NER_VERSION,
        "task": "ner",
        "created_at": "2026-01-01T00:00:00+00:00",
        "labels": TINY_NER_TAGS,
        "metrics": {"dev_f1": 50.0},
        "providers": ["CPUExecutionProvider"],
        "precision": "fp32",
    }
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "ready": True, "models": ["ner", "sentiment"]}
