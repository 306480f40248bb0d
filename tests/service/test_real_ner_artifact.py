"""The committed exported_models/ner artifact, served through the app at POST /v1/ner.

These tests fail (never skip) when the artifact is missing: the image ships it. The sentences
are CoNLL-2003-style news, where a trained BiLSTM-CNN-CRF is expected to be right.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

URL = "/v1/ner"
EU_SENTENCE = "EU rejects German call to boycott British lamb."
EU_TOKENS = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
BRUSSELS_SENTENCE = "The proposal was rejected on Thursday, said Peter Blackburn in Brussels."
DEFAULT_LIMITS = {
    "max_texts_per_request": 256,
    "max_text_chars": 20_000,
    "max_body_bytes": 2 * 1024 * 1024,
}


@pytest.fixture
def real_ner_client(app_factory, real_ner_model_dir: Path) -> FlaskClient:
    """The app over the committed NER artifact alone, with the default request limits."""
    return app_factory(real_ner_model_dir, models=("ner",), **DEFAULT_LIMITS).test_client()


def tag(client: FlaskClient, body: dict) -> list[dict]:
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["model"]["name"] == "ner"
    return response.get_json()["results"]


def entities(result: dict) -> list[tuple[str, str]]:
    return [(e["type"], e["text"]) for e in result["entities"]]


def assert_offsets_exact(text: str, result: dict) -> None:
    for item in result["entities"] + result["tokens"]:
        assert text[item["start"] : item["end"]] == item["text"], item
    assert "".join(t["text"] for t in result["tokens"]) == "".join(text.split())


def test_the_committed_ner_artifact_loads_and_is_ready(real_ner_client: FlaskClient) -> None:
    response = real_ner_client.get("/v2/health/ready")

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["models"] == ["ner"]


def test_the_classic_conll_sentence_is_tagged(real_ner_client: FlaskClient) -> None:
    (result,) = tag(real_ner_client, {"texts": [EU_SENTENCE]})

    assert entities(result) == [("ORG", "EU"), ("MISC", "German"), ("MISC", "British")]
    assert [(e["start"], e["end"]) for e in result["entities"]] == [(0, 2), (11, 17), (34, 41)]
    assert all(0.5 < e["score"] <= 1.0 for e in result["entities"])
    assert_offsets_exact(EU_SENTENCE, result)


def test_a_person_and_a_place_are_found(real_ner_client: FlaskClient) -> None:
    (result,) = tag(real_ner_client, {"texts": [BRUSSELS_SENTENCE]})

    found = entities(result)
    assert ("PER", "Peter Blackburn") in found
    assert ("LOC", "Brussels") in found
    assert_offsets_exact(BRUSSELS_SENTENCE, result)


def test_a_sentence_in_small_letters_is_tagged_as_in_its_usual_case(real_ner_client) -> None:
    """CoNLL is cased news: before the truecaser, this sentence had no entity at all."""
    usual = "Helmut Kohl flew to Bonn with officials from the European Union."
    small, usual_result = tag(real_ner_client, {"texts": [usual.lower(), usual]})

    assert entities(small) == [(k, t.lower()) for k, t in entities(usual_result)]
    assert entities(small) == [
        ("PER", "helmut kohl"),
        ("LOC", "bonn"),
        ("ORG", "european union"),
    ]
    spans = [(e["start"], e["end"]) for e in small["entities"]]
    assert spans == [(e["start"], e["end"]) for e in usual_result["entities"]]
    assert_offsets_exact(usual.lower(), small)


def test_a_sentence_in_capitals_is_read_as_written(real_ner_client) -> None:
    """The training news has headlines in capitals: the model reads them as they are."""
    (result,) = tag(real_ner_client, {"tokens": [["JAPAN", "BEAT", "SYRIA", "IN", "ASIAN", "CUP"]]})
    found = entities(result)
    assert ("LOC", "JAPAN") in found and ("LOC", "SYRIA") in found


def test_tokens_and_the_same_text_tag_alike(real_ner_client: FlaskClient) -> None:
    (from_tokens,) = tag(real_ner_client, {"tokens": [EU_TOKENS]})
    (from_text,) = tag(real_ner_client, {"texts": [" ".join(EU_TOKENS)]})

    assert [t["tag"] for t in from_tokens["tokens"]] == [t["tag"] for t in from_text["tokens"]]
    assert entities(from_tokens) == [("ORG", "EU"), ("MISC", "German"), ("MISC", "British")]
    assert_offsets_exact(" ".join(EU_TOKENS), from_tokens)


def test_a_result_does_not_depend_on_the_rest_of_the_batch(real_ner_client: FlaskClient) -> None:
    # Padding must not leak into a sentence's tags (the graph has to honour `lengths`).
    filler = ["word " * n + "." for n in (40, 120, 300)]
    texts = [EU_SENTENCE, BRUSSELS_SENTENCE]
    alone = [tag(real_ner_client, {"texts": [text]})[0] for text in texts]
    together = tag(real_ner_client, {"texts": filler + texts})[len(filler) :]

    for single, batched in zip(alone, together, strict=True):
        assert batched["tokens"] == single["tokens"]
        assert entities(batched) == entities(single)
        for a, b in zip(single["entities"], batched["entities"], strict=True):
            assert b["score"] == pytest.approx(a["score"], abs=1e-5)


def test_a_name_across_a_window_cut_is_one_entity(real_ner_client: FlaskClient) -> None:
    # 163 tokens and no sentence end: longer than max_tokens (150), so tagged in two windows
    # whose cores meet between "Peter" (token 80) and "Blackburn" (token 81).
    filler = 11 * ["the", "ministers", "said", "on", "Thursday", "that", "the", "talks"]
    words = [*filler[:80], "Peter", "Blackburn", *filler[:81]]
    text = " ".join(words)
    start = len(" ".join(words[:80])) + 1

    (result,) = tag(real_ner_client, {"texts": [text]})
    (from_tokens,) = tag(real_ner_client, {"tokens": [words]})
    (short,) = tag(real_ner_client, {"texts": ["said Peter Blackburn in Brussels"]})

    assert len(result["tokens"]) == 163
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in result["entities"]] == [
        ("PER", "Peter Blackburn", start, start + len("Peter Blackburn"))
    ]
    assert ("PER", "Peter Blackburn") in entities(short)
    entity = result["entities"][0]
    assert 0.5 < entity["score"] <= min(t["score"] for t in result["tokens"][80:82])
    assert from_tokens == result
    assert_offsets_exact(text, result)


def test_offsets_are_exact_on_unicode_text(real_ner_client: FlaskClient) -> None:
    text = "Zoë  Ångström flew from São Paulo to 東京 🙂🙂 with\tthe U.N. team.\nMüller stayed."

    (result,) = tag(real_ner_client, {"texts": [text]})

    assert_offsets_exact(text, result)


def test_models_and_readiness_list_every_committed_model(
    app_factory, real_ner_model_dir: Path, real_model_dir: Path
) -> None:
    client = app_factory(real_ner_model_dir, **DEFAULT_LIMITS).test_client()  # every folder

    ready = client.get("/v2/health/ready")
    models = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}

    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["models"] == ["ner", "sentiment", "translation"]
    assert models["ner"]["task"] == "ner"
    assert models["ner"]["labels"][0] == "O" and len(models["ner"]["labels"]) == 9
    assert "dev_f1" in models["ner"]["metrics"]
    assert models["sentiment"]["task"] == "sentiment"
    assert models["translation"]["task"] == "translation"
