"""The OpenAPI document is valid, covers every /v1 endpoint, and real responses conform to it;
the interactive docs need no internet."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from service.openapi import ERROR_STATUSES


@pytest.fixture(scope="module")
def document(ner_app: Flask) -> dict:
    response = ner_app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def check_conforms(document: dict, path: str, method: str, response) -> None:
    """The response's body matches the document's schema for its status."""
    responses = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {path} answered {status}, not documented"
    schema = responses[status]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    errors = [e.message for e in validator.iter_errors(response.get_json())]
    assert not errors, errors


def test_the_document_is_valid_openapi_3(document: dict) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]


def test_yaml_loaders_read_the_document_as_json_loaders_do(ner_app: Flask) -> None:
    """openapi-spec-validator's command line reads a document with libyaml, which refuses the
    surrogate pairs that ASCII-only JSON writes for characters beyond U+FFFF (the text
    patterns hold some)."""
    body = ner_app.test_client().get("/openapi.json").get_data()

    assert yaml.load(body, Loader=yaml.CSafeLoader) == json.loads(body)


def test_every_v1_endpoint_is_documented_with_request_response_and_errors(
    ner_app: Flask, document: dict
) -> None:
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in ner_app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}

    assert routes and routes <= documented
    for path, method in routes:
        operation = document["paths"][path][method]
        assert operation["summary"] and "200" in operation["responses"]
        assert "500" in operation["responses"]
        if method == "post" and not path.endswith("/reload"):  # the prediction endpoints
            assert "requestBody" in operation
            assert {"400", "413", "422", "503"} <= set(operation["responses"])
        for status, answer in operation["responses"].items():
            if status != "200":
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (path, status)
                assert answer["description"] == ERROR_STATUSES[int(status)]


@pytest.mark.parametrize(
    ("path", "method", "body", "status"),
    [
        ("/v1/sentiment", "post", {"texts": ["a great movie", "awful"]}, 200),
        ("/v1/sentiment", "post", {"texts": []}, 422),
        ("/v1/sentiment", "post", "not json", 400),
        ("/v1/sentiment", "post", {"texts": ["good " * 100] * 40}, 413),
        ("/v1/ner", "post", {"texts": ["EU rejects German call to boycott British lamb."]}, 200),
        ("/v1/ner", "post", {"tokens": [["Peter", "Blackburn"]]}, 200),
        ("/v1/ner", "post", {"texts": ["EU"], "tokens": [["EU"]]}, 422),
        ("/v1/models", "get", None, 200),
        ("/v2/health/live", "get", None, 200),
        ("/v2/health/ready", "get", None, 200),
    ],
)
def test_real_responses_conform_to_the_document(
    ner_client: FlaskClient, document: dict, path: str, method: str, body, status: int
) -> None:
    if isinstance(body, str):
        response = ner_client.post(path, data=body)
    else:
        response = getattr(ner_client, method)(path, json=body)

    assert response.status_code == status
    check_conforms(document, path, method, response)


def test_translate_is_documented_with_its_parameters_and_errors(document: dict) -> None:
    operation = document["paths"]["/v1/translate"]["post"]
    assert {"200", "400", "413", "422", "500", "503"} <= set(operation["responses"])
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    properties = request["properties"]
    assert set(properties) == {"texts", "beam_size", "max_length", "return_attention"}
    assert request["required"] == ["texts"] and request["additionalProperties"] is False
    beam_size = properties["beam_size"]
    integer = next(schema for schema in beam_size["anyOf"] if schema["type"] == "integer")
    assert (integer["minimum"], integer["maximum"]) == (1, 10)
    assert {"type": "null"} in beam_size["anyOf"] and beam_size["default"] is None
    assert "the model's own" in beam_size["description"]
    assert properties["texts"]["maxItems"] == 100  # this server's MAX_TEXTS_PER_REQUEST
    for name, schema in properties.items():
        assert schema["description"], name
    result = document["components"]["schemas"]["TranslationResult"]
    assert set(result["required"]) == {"translation", "score", "truncated"}
    assert "attention" in result["properties"]


def test_ner_token_and_entity_scores_are_documented_probabilities(document: dict) -> None:
    schemas = document["components"]["schemas"]
    for name in ("NerToken", "NerEntity"):
        score = schemas[name]["properties"]["score"]
        assert "score" in schemas[name]["required"], name
        assert (score["type"], score["minimum"], score["maximum"]) == ("number", 0.0, 1.0)
    assert "marginal probability" in schemas["NerToken"]["properties"]["score"]["description"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"texts": ["A dog runs.", "Two men sit."]}, 200),
        ({"texts": ["A dog runs."], "beam_size": 1, "return_attention": True}, 200),
        ({"texts": ["A dog runs."], "max_length": 3, "return_attention": True}, 200),
        ({"texts": ["A dog runs."], "beam_size": 11}, 422),
        ({"texts": ["\u0000"]}, 422),
        ("not json", 400),
        ({"texts": ["A dog runs. " * 40] * 40}, 413),
    ],
)
def test_translate_responses_conform_to_the_document(
    translation_client: FlaskClient, document: dict, body, status: int
) -> None:
    if isinstance(body, str):
        response = translation_client.post("/v1/translate", data=body)
    else:
        response = translation_client.post("/v1/translate", json=body)

    assert response.status_code == status
    check_conforms(document, "/v1/translate", "post", response)


def test_not_ready_responses_conform_too(app_factory, tmp_path, document: dict) -> None:
    client = app_factory(tmp_path).test_client()  # no models at all

    check_conforms(document, "/v2/health/ready", "get", client.get("/v2/health/ready"))
    response = client.post("/v1/sentiment", json={"texts": ["good"]})
    assert response.status_code == 503
    check_conforms(document, "/v1/sentiment", "post", response)
    response = client.post("/v1/translate", json={"texts": ["A dog runs."]})
    assert response.status_code == 503
    check_conforms(document, "/v1/translate", "post", response)


def test_docs_are_served_without_any_internet(ner_client: FlaskClient) -> None:
    page = ner_client.get("/docs")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "SwaggerUIBundle" in html and "/openapi.json" in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and not [s for s in sources if "//" in s]  # nothing from another host
    for source in sources:
        asset = ner_client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.get_data()) > 1000
    assert ner_client.get("/docs/").status_code in (301, 302, 308)


def test_spectree_s_own_address_sends_to_the_one_document(ner_client: FlaskClient) -> None:
    """/docs/openapi.json would be spectree's copy, without this server's limits."""
    response = ner_client.get("/docs/openapi.json", follow_redirects=True)

    assert response.request.path == "/openapi.json"
    assert "x-limit-max-items" not in response.get_data(as_text=True)


def test_the_optional_bearer_key_is_documented(document: dict) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["paths"]["/v1/sentiment"]["post"]["security"] == [{"bearerAuth": []}, {}]
    assert "security" not in document["paths"]["/v2/health/ready"]["get"]
    reload = document["paths"]["/v1/models/{name}/reload"]["post"]
    assert {"401", "403", "404", "409"} <= set(reload["responses"])


def test_reload_responses_conform(
    app_factory, admin_app_factory, own_model_dir, document: dict
) -> None:
    client = admin_app_factory(own_model_dir).test_client()
    path = "/v1/models/{name}/reload"
    keyless = app_factory(own_model_dir).test_client()
    check_conforms(document, path, "post", keyless.post("/v1/models/sentiment/reload"))

    check_conforms(document, path, "post", client.post("/v1/models/sentiment/reload"))
    check_conforms(document, path, "post", client.post("/v1/models/translation/reload"))


def test_an_ner_request_is_one_typed_object_of_texts_or_tokens(document: dict) -> None:
    """Exactly one of the two fields, said without oneOf, so that client generators give the
    request a type of its own."""
    schema = document["components"]["schemas"]
    request = next(s for name, s in schema.items() if name.startswith("NerRequest"))
    assert "oneOf" not in request and request["additionalProperties"] is False
    validator = Draft202012Validator({**request, "components": document["components"]})
    texts, tokens = {"texts": ["EU rejects it."]}, {"tokens": [["EU", "rejects", "it"]]}

    assert validator.is_valid(texts) and validator.is_valid(tokens)
    assert not validator.is_valid({}) and not validator.is_valid(texts | tokens)
