"""POST /v1/translate over a tiny trained translation model: every parameter, every error
status, request order, batch invariance and the attention weights. The tiny model translates
badly, so only structure and invariants are asserted, never quality."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import REGISTRY_KEY
from service.predictors.translator import Untranslatable
from service.runtime.manifest import file_hashes
from service.schemas import MAX_TRANSLATION_LENGTH
from tests.service.tiny_artifact import build_tiny_artifact
from tests.service.tiny_translation_artifact import TINY_TRANSLATION_MAX_SOURCE_TOKENS

URL = "/v1/translate"
TEXTS = [
    "A dog sleeps in the snow.",
    "Two men play at the beach.",
    "A woman sits.",
    "A child runs in the park.",
]


def translate(client: FlaskClient, body: dict) -> tuple[int, dict]:
    response = client.post(URL, json=body)
    return response.status_code, response.get_json()


def results(client: FlaskClient, texts: list[str], **params) -> list[dict]:
    status, body = translate(client, {"texts": texts, **params})
    assert status == 200, body
    return body["results"]


def test_translates_every_text_in_request_order(translation_client: FlaskClient) -> None:
    status, body = translate(translation_client, {"texts": TEXTS})

    assert status == 200
    assert body["model"] == {"name": "translation", "version": "1.0.0"}
    assert len(body["results"]) == len(TEXTS)
    for result in body["results"]:
        assert set(result) == {"translation", "score", "truncated"}  # no attention unasked
        assert isinstance(result["translation"], str)
        assert result["score"] <= 0
        assert result["truncated"] is False
    reversed_results = results(translation_client, TEXTS[::-1])
    assert reversed_results[::-1] == body["results"]


@pytest.mark.parametrize("beam_size", [1, 3, 10])
def test_a_text_translates_the_same_alone_and_batched(
    translation_client: FlaskClient, beam_size: int
) -> None:
    batched = results(translation_client, TEXTS * 3, beam_size=beam_size)

    for index, text in enumerate(TEXTS):
        (alone,) = results(translation_client, [text], beam_size=beam_size)
        for copy in batched[index :: len(TEXTS)]:
            assert copy["translation"] == alone["translation"]
            assert copy["score"] == pytest.approx(alone["score"], abs=1e-5)


@pytest.mark.parametrize("model_beam_size", [5, 2])
def test_the_default_beam_size_is_the_model_s_own(
    translation_app: Flask, monkeypatch, model_beam_size: int
) -> None:
    # The manifest's beam_size, the one the model's dev BLEU was measured with (5 here).
    translator = translation_app.extensions[REGISTRY_KEY].models["translation"].predictor
    preprocessing = translator.preprocessing.model_copy(update={"beam_size": model_beam_size})
    monkeypatch.setattr(translator, "preprocessing", preprocessing)
    searched = []
    search = translator.search
    monkeypatch.setattr(
        translator, "search", lambda *args: searched.append(args[2]) or search(*args)
    )
    client = translation_app.test_client()
    default = results(client, TEXTS)
    assert results(client, TEXTS, beam_size=None) == default
    assert results(client, TEXTS, beam_size=model_beam_size) == default
    assert searched == [model_beam_size] * 3
    v2 = client.post(
        "/v2/models/translation/infer",
        json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": TEXTS[:1]}]},
    )
    assert v2.status_code == 200
    assert searched[-1] == model_beam_size


def test_integers_may_be_written_as_json_numbers_without_fraction(translation_client) -> None:
    """JSON Schema's integer (as documented) includes 3.0; strings and booleans are refused."""
    as_float = results(translation_client, TEXTS, beam_size=3.0, max_length=7.0)
    assert as_float == results(translation_client, TEXTS, beam_size=3, max_length=7)


def test_greedy_and_beam_search_both_answer(translation_client: FlaskClient) -> None:
    greedy = results(translation_client, TEXTS, beam_size=1)
    beam = results(translation_client, TEXTS, beam_size=4)
    assert len(greedy) == len(beam) == len(TEXTS)
    for g, b in zip(greedy, beam, strict=True):
        # Both rank by the average log-probability; beam search finds one at least as good
        # (up to the search's pruning, so only a loose check).
        assert b["score"] >= g["score"] - 1.0


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_has_one_row_per_target_token_each_summing_to_1(
    translation_client: FlaskClient, beam_size: int
) -> None:
    answers = results(translation_client, TEXTS, beam_size=beam_size, return_attention=True)

    for answer in answers:
        attention = answer["attention"]
        assert set(attention) == {"source_tokens", "target_tokens", "weights"}
        weights = np.array(attention["weights"])
        assert weights.shape == (len(attention["target_tokens"]), len(attention["source_tokens"]))
        assert attention["source_tokens"][-1] == "</s>"
        assert attention["target_tokens"][-1] == "</s>"
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        assert (weights >= 0).all()
    plain = results(translation_client, TEXTS, beam_size=beam_size, return_attention=False)
    assert [a["translation"] for a in answers] == [p["translation"] for p in plain]


@pytest.mark.parametrize("max_length", [1, 2, 5])
def test_max_length_caps_the_target_tokens(translation_client: FlaskClient, max_length) -> None:
    for beam_size in (1, 3):
        answers = results(
            translation_client,
            TEXTS,
            beam_size=beam_size,
            max_length=max_length,
            return_attention=True,
        )
        for answer in answers:
            assert len(answer["attention"]["target_tokens"]) <= max_length  # eos included
    (one,) = results(translation_client, TEXTS[:1], max_length=1, return_attention=True)
    assert one["translation"] == "" and one["attention"]["target_tokens"] == ["</s>"]


def test_a_request_s_max_length_never_passes_the_model_s_own(
    translation_app: Flask, monkeypatch
) -> None:
    translator = translation_app.extensions[REGISTRY_KEY].models["translation"].predictor
    preprocessing = translator.preprocessing.model_copy(update={"max_length": 4})
    monkeypatch.setattr(translator, "preprocessing", preprocessing)

    row = translator.make_row("A man in a blue shirt runs.", max_length=MAX_TRANSLATION_LENGTH)

    assert row.max_length == 4


def test_max_length_null_is_the_models_limit(translation_client: FlaskClient) -> None:
    assert results(translation_client, TEXTS, max_length=None) == results(translation_client, TEXTS)
    big = results(translation_client, TEXTS, max_length=MAX_TRANSLATION_LENGTH)
    assert big == results(translation_client, TEXTS)


def test_a_source_longer_than_the_model_reads_is_truncated_and_flagged(
    translation_client: FlaskClient,
) -> None:
    long_text = ", ".join(["a man runs in the park"] * 10) + "."  # one sentence
    short, long = results(translation_client, ["A man runs.", long_text], return_attention=True)

    assert short["truncated"] is False
    assert long["truncated"] is True
    assert len(long["attention"]["source_tokens"]) == TINY_TRANSLATION_MAX_SOURCE_TOKENS


def test_a_text_of_several_sentences_is_translated_sentence_by_sentence(
    translation_client: FlaskClient,
) -> None:
    """The model knows single sentences: each is translated alone, and the translations are
    joined with the whitespace that separated the sentences."""
    sentences = ["A man runs in the park.", "Two dogs play!", "A child sleeps."]
    text = f"  {sentences[0]} {sentences[1]}\n\n{sentences[2]} "
    (whole,) = results(translation_client, [text], return_attention=True)
    alone = results(translation_client, sentences, return_attention=True)

    parts = [r["translation"] for r in alone]
    assert whole["translation"] == f"{parts[0]} {parts[1]}\n\n{parts[2]}"
    attention = whole["attention"]
    steps = [len(r["attention"]["target_tokens"]) for r in alone]
    for side in ("source_tokens", "target_tokens"):
        assert attention[side] == [token for r in alone for token in r["attention"][side]]
    assert whole["score"] == pytest.approx(
        sum(r["score"] * n for r, n in zip(alone, steps, strict=True)) / sum(steps)
    )
    weights = np.array(attention["weights"])  # block-diagonal: each sentence its own source
    top = left = 0
    for result in alone:
        block = np.array(result["attention"]["weights"])
        rows, columns = block.shape
        np.testing.assert_allclose(weights[top : top + rows, left : left + columns], block)
        assert not weights[top : top + rows, :left].any()
        assert not weights[top : top + rows, left + columns :].any()
        top, left = top + rows, left + columns
    assert weights.shape == (top, left)
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-5)


def test_a_sentence_in_capitals_title_case_or_small_letters_is_read_in_sentence_case(
    translation_client: FlaskClient,
) -> None:
    """The model learned from sentence case only (the artifact's truecaser restores it); the
    translation of a sentence in capitals is in capitals."""
    texts = ["A dog sleeps in the snow.", "A DOG SLEEPS IN THE SNOW."]
    texts += ["A Dog Sleeps In The Snow.", "a dog sleeps in the snow."]
    usual, capitals, title, small = results(translation_client, texts, return_attention=True)

    assert capitals["translation"] == usual["translation"].upper()
    assert title["translation"] == small["translation"] == usual["translation"]
    for result in (capitals, title, small):
        assert result["attention"] == usual["attention"]  # the subwords the model read
        assert result["score"] == usual["score"]


def test_each_sentence_of_a_text_keeps_its_own_case(translation_client: FlaskClient) -> None:
    shout, usual = "TWO DOGS PLAY!", "A child sleeps."
    (whole,) = results(translation_client, [f"{shout} {usual}"])
    alone = [r["translation"] for r in results(translation_client, [shout, usual])]

    assert whole["translation"] == " ".join(alone)
    assert alone[0] == alone[0].upper() and alone[1] != alone[1].upper()


def test_an_artifact_without_a_truecaser_reads_texts_as_written(
    app_factory, tiny_translation_model_dir: Path, tmp_path: Path
) -> None:
    """Models exported before the truecaser keep translating as they did."""
    folder = tmp_path / "translation"
    shutil.copytree(tiny_translation_model_dir / "translation", folder)
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    del manifest["preprocessing"]["truecaser"], manifest["files"]["truecase.json"]
    (folder / "truecase.json").unlink()
    (folder / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    client = app_factory(tmp_path).test_client()

    usual, capitals = results(client, ["A dog sleeps.", "A DOG SLEEPS."], return_attention=True)

    assert capitals["attention"]["source_tokens"] != usual["attention"]["source_tokens"]


def test_a_truecaser_table_that_is_not_one_is_refused_at_load(
    app_factory, tiny_translation_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "translation"
    shutil.copytree(tiny_translation_model_dir / "translation", folder)
    (folder / "truecase.json").write_text('{"forms": {"paris": "London"}}', "utf-8")
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    manifest["files"]["truecase.json"] = file_hashes(folder)["truecase.json"]
    (folder / "manifest.json").write_text(json.dumps(manifest), "utf-8")

    response = app_factory(tmp_path).test_client().get("/v2/health/ready")

    assert response.status_code == 503
    assert "truecase.json: not a truecaser table" in response.get_json()["error"]["message"]


def test_each_sentence_of_a_text_gets_the_source_length_the_model_reads(
    translation_client: FlaskClient,
) -> None:
    """Ten sentences are longer than max_source_tokens together, not one by one."""
    (result,) = results(translation_client, [" ".join(["A man runs in the park."] * 10)])

    assert result["truncated"] is False
    assert result["translation"].count(" ") >= 9  # ten translations, joined


def test_truncated_means_source_pieces_were_cut(translation_client: FlaskClient) -> None:
    # The encoder reads max_source_tokens ids, eos included: a source of one piece fewer is
    # whole, one of exactly max_source_tokens pieces loses its last.
    translator = translation_client.application.extensions[REGISTRY_KEY].models["translation"]
    source = translator.predictor.source
    # in sentence case, which the truecaser leaves as written
    candidates = [" ".join(["A"] + ["man"] * odd + ["a"] * n) for odd in (0, 1) for n in range(30)]
    texts = {len(source.encode(text)): text for text in candidates}
    fits, over = TINY_TRANSLATION_MAX_SOURCE_TOKENS - 1, TINY_TRANSLATION_MAX_SOURCE_TOKENS
    assert fits in texts and over in texts  # the tiny model's pieces are nearly characters

    whole, cut = results(translation_client, [texts[fits], texts[over]])

    assert whole["truncated"] is False
    assert cut["truncated"] is True


def test_unicode_and_unknown_characters_translate(translation_client: FlaskClient) -> None:
    answers = results(translation_client, ["Zürich 東京 🙂", "x\u0000y A dog."])
    assert len(answers) == 2


def error_of(client: FlaskClient, body, status: int) -> dict:
    payload = {"data": body} if isinstance(body, str) else {"json": body}
    response = client.post(URL, **payload)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"texts": ["a"], "beam_size": 0}, "beam_size", "greater than or equal to 1"),
        ({"texts": ["a"], "beam_size": 11}, "beam_size", "less than or equal to 10"),
        ({"texts": ["a"], "beam_size": "5"}, "beam_size", "got a string"),
        ({"texts": ["a"], "beam_size": 2.5}, "beam_size", "got a number"),
        ({"texts": ["a"], "beam_size": True}, "beam_size", "got a boolean"),
        ({"texts": ["a"], "max_length": 0}, "max_length", "greater than or equal to 1"),
        (
            {"texts": ["a"], "max_length": MAX_TRANSLATION_LENGTH + 1},
            "max_length",
            "less than or equal to",
        ),
        ({"texts": ["a"], "max_length": "9"}, "max_length", "got a string"),
        ({"texts": ["a"], "return_attention": "yes"}, "return_attention", "got a string"),
        ({"texts": ["a"], "return_attention": 1}, "return_attention", "got a number"),
        ({"texts": ["a"], "beam": 3}, "beam", "unknown field"),
        ({"texts": ["a"], "source_lang": "en"}, "source_lang", "unknown field"),
        ({}, "texts", "field required"),
        ({"texts": []}, "texts", "at least 1 text"),
        ({"texts": "a dog"}, "texts", "got a string"),
        ({"texts": ["a", 3]}, "texts[1]", "got a number"),
        ({"texts": ["a", "   "]}, "texts[1]", "empty after stripping"),
        ({"texts": ["a", "x" * 501]}, "texts[1]", "at most 500"),
        ({"texts": ["a"] * 101}, "texts", "at most 100 texts"),
    ],
)
def test_bad_requests_are_422_naming_the_field(
    translation_client: FlaskClient, body: dict, field: str, words: str
) -> None:
    error = error_of(translation_client, body, 422)

    assert error["code"] == "validation_failed"
    assert error["message"].startswith(f"{field}: ")
    assert words in error["message"]
    assert error["details"][0]["field"] == field


@pytest.mark.parametrize(
    "blank",
    [
        "\u0000\u0001",
        "\u0007 \u001b",
        "\u200b",
        "\ufeff\u00ad",
        "\u00ad\u200e \u2028",
        "\u2581\ufffd",
    ],
)
def test_a_text_with_nothing_left_after_normalization_is_422(
    translation_client: FlaskClient, blank: str
) -> None:
    error = error_of(translation_client, {"texts": ["A dog runs.", blank, blank]}, 422)

    assert error["message"].startswith("texts[1]: text has nothing to translate")
    assert [d["field"] for d in error["details"]] == ["texts[1]", "texts[2]"]


def test_a_lone_surrogate_is_422_not_a_crash(translation_client: FlaskClient) -> None:
    error = error_of(translation_client, '{"texts": ["A dog", "runs \\ud800."]}', 422)

    assert error["message"].startswith("texts[1]: text contains an unpaired UTF-16 surrogate")


@pytest.mark.parametrize("body", ["not json", "[1, 2]", ""])
def test_a_body_that_is_not_a_json_object_is_400(translation_client, body: str) -> None:
    assert error_of(translation_client, body, 400)["code"] == "bad_request"


def test_a_body_over_the_limit_is_413(translation_client: FlaskClient) -> None:
    error = error_of(translation_client, {"texts": ["A dog runs. " * 40] * 40}, 413)
    assert error["code"] == "payload_too_large"


def test_wrong_method_is_405(translation_client: FlaskClient) -> None:
    assert translation_client.get(URL).status_code == 405


def test_404_when_no_translation_model_is_served(ner_client: FlaskClient) -> None:
    error = error_of(ner_client, {"texts": ["A dog runs."]}, 404)
    assert error["code"] == "not_found"
    assert "no translation model is served here; loaded: ner, sentiment" in error["message"]


def test_404_though_a_model_of_another_task_failed_to_load(app_factory, tmp_path) -> None:
    build_tiny_artifact(tmp_path / "sentiment")
    build_tiny_artifact(tmp_path / "broken")  # a second sentiment model, then broken
    (tmp_path / "broken" / "model.onnx").write_bytes(b"not a graph")
    client = app_factory(tmp_path).test_client()

    assert client.get("/v2/health/ready").status_code == 503
    assert error_of(client, {"texts": ["A dog runs."]}, 404)["code"] == "not_found"


def test_503_when_the_translation_model_failed_to_load(app_factory, tmp_path: Path) -> None:
    build_tiny_artifact(tmp_path / "sentiment")
    (tmp_path / "translation").mkdir()
    (tmp_path / "translation" / "manifest.json").write_text("{}", "utf-8")
    client = app_factory(tmp_path).test_client()

    error = error_of(client, {"texts": ["A dog runs."]}, 503)
    assert error["code"] == "not_ready"
    assert "no translation model is loaded" in error["message"]


def test_bad_parameters_are_422_even_without_a_model(ner_client: FlaskClient) -> None:
    assert error_of(ner_client, {"texts": ["a"], "beam_size": 0}, 422)["code"]


def test_readiness_and_models_list_the_translation_model(translation_client) -> None:
    ready = translation_client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.get_json()["models"] == ["sentiment", "translation"]
    models = {m["name"]: m for m in translation_client.get("/v1/models").get_json()["models"]}
    assert models["translation"]["task"] == "translation"
    assert models["translation"]["providers"] == ["CPUExecutionProvider"]
    assert {"dev_bleu_beam", "dev_bleu_greedy"} <= models["translation"]["metrics"].keys()


def test_translation_through_the_dynamic_batcher_and_inline(
    app_factory, tiny_translation_model_dir: Path
) -> None:
    inline = app_factory(tiny_translation_model_dir, batching=False).test_client()
    batched = app_factory(tiny_translation_model_dir, batching=True).test_client()
    for beam_size in (1, 3):
        expected = results(inline, TEXTS, beam_size=beam_size, return_attention=True)
        got = results(batched, TEXTS, beam_size=beam_size, return_attention=True)
        assert [g["translation"] for g in got] == [e["translation"] for e in expected]
        for g, e in zip(got, expected, strict=True):
            assert g["score"] == pytest.approx(e["score"], abs=1e-5)


def test_concurrent_requests_with_different_settings_are_batched_correctly(
    app_factory, tiny_translation_model_dir: Path
) -> None:
    """Requests with different beam sizes and max lengths share the dynamic batcher's batches;
    each gets what it would get alone."""
    app = app_factory(tiny_translation_model_dir, batching=True, batch_max_queue_delay_ms=50)
    jobs = [
        (TEXTS[i % len(TEXTS) :] + TEXTS[: i % len(TEXTS)], 1 + i % 3, (None, 4, 30)[i % 3])
        for i in range(9)
    ]

    def run(job: tuple[list[str], int, int | None]) -> list[dict]:
        texts, beam_size, max_length = job
        return results(app.test_client(), texts, beam_size=beam_size, max_length=max_length)

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(run, jobs))
    for job, got in zip(jobs, together, strict=True):
        alone = [run(([text], job[1], job[2]))[0] for text in job[0]]
        assert [g["translation"] for g in got] == [a["translation"] for a in alone]
        assert [g["score"] for g in got] == pytest.approx([a["score"] for a in alone], abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_a_graph_that_scores_nan_is_a_500_naming_the_graph_in_the_log(
    translation_app: Flask, monkeypatch: pytest.MonkeyPatch, caplog, beam_size: int
) -> None:
    """Greedy search answered a NaN score and beam search crashed on an empty list."""
    decoder_step = translation_app.extensions[REGISTRY_KEY].models["translation"].predictor
    decoder_step = decoder_step.decoder_step
    run = decoder_step.run

    def nan_scores(feeds):
        out = dict(run(feeds))
        out["log_probs"] = np.full_like(out["log_probs"], np.nan)
        return out

    monkeypatch.setattr(decoder_step, "run", nan_scores)
    status, body = translate(
        translation_app.test_client(), {"texts": ["A dog."], "beam_size": beam_size}
    )
    assert status == 500
    assert body["error"]["code"] == "internal_error"
    assert "decoder_step" in caplog.text and "log_probs holds NaN" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [{"beam_size": 0}, {"max_source_tokens": 1}, {"max_length": 0}, {"length_penalty": -1.0}],
)
def test_decoding_defaults_out_of_range_are_refused_at_load(
    app_factory, tiny_translation_model_dir: Path, tmp_path: Path, bad: dict
) -> None:
    # beam_size 0 loaded as ready, then made every request that took the default a 500.
    folder = tmp_path / "translation"
    shutil.copytree(tiny_translation_model_dir / "translation", folder)
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    manifest["preprocessing"].update(bad)
    (folder / "manifest.json").write_text(json.dumps(manifest), "utf-8")

    response = app_factory(tmp_path).test_client().get("/v2/health/ready")

    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert "manifest.preprocessing is invalid" in message and next(iter(bad)) in message


def test_the_translator_itself_names_every_text_with_nothing_to_translate(
    translation_app: Flask,
) -> None:
    """Not only the HTTP schema: /v2, gRPC and the training CLI call the translator directly."""
    translator = translation_app.extensions[REGISTRY_KEY].models["translation"].predictor

    with pytest.raises(Untranslatable) as caught:
        translator.predict_batch(["A dog runs.", "\u200b", " \u2581"])

    assert [index for index, _ in caught.value.problems] == [1, 2]
