"""The Open Inference Protocol (KServe V2) endpoints: JSON through Flask's test client, and the
stock ``tritonclient.http`` client (binary data by default) against a real HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from flask import Flask
from flask.testing import FlaskClient
from tritonclient.utils import InferenceServerException

from tests.service.live_server import serving_in_thread
from tests.service.tiny_artifact import build_tiny_artifact
from tests.service.tiny_ner_artifact import TINY_NER_VERSION

VERSION = "0.0.1-test"
SENTIMENT_TEXTS = ["a great movie", "an awful movie", "Zürich 東京 🙂 good"]
NER_TEXTS = ["EU rejects German call to boycott British lamb.", "Zoë Ångström visited Zürich."]


def text_input(texts: list[str]) -> dict:
    return {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}


def infer(client: FlaskClient, model: str, body: dict, **kwargs) -> tuple[int, dict]:
    response = client.post(f"/v2/models/{model}/infer", json=body, **kwargs)
    return response.status_code, response.get_json()


def outputs_by_name(body: dict) -> dict[str, dict]:
    return {o["name"]: o for o in body["outputs"]}


def v1(client: FlaskClient, task: str, texts: list[str]) -> list[dict]:
    response = client.post(f"/v1/{task}", json={"texts": texts})
    assert response.status_code == 200
    return response.get_json()["results"]


# --- metadata and readiness ----------------------------------------------------------------


def test_server_metadata(ner_client: FlaskClient) -> None:
    body = ner_client.get("/v2").get_json()

    assert body["name"] == "rnn-inference-service"
    assert body["extensions"] == ["binary_tensor_data", "model_configuration", "statistics"]
    assert body["version"]


@pytest.mark.parametrize(
    "path", ["/v2/models/sentiment/config", f"/v2/models/sentiment/versions/{VERSION}/config"]
)
def test_the_model_configuration_is_the_metadata_in_tritons_terms(ner_client, path) -> None:
    """Triton's data type names, the metadata's shapes as whole (max_batch_size 0: the text
    tensor is the batch), and what Triton's configuration has no field for as parameters."""
    metadata = ner_client.get("/v2/models/sentiment").get_json()

    config = ner_client.get(path).get_json()

    assert config == {
        "name": "sentiment",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": 0,
        "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}],
        "output": [
            {"name": "label", "data_type": "TYPE_STRING", "dims": [-1]},
            {"name": "score", "data_type": "TYPE_FP32", "dims": [-1]},
            {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [-1, 2]},
        ],
        "parameters": {
            "version": {"string_value": VERSION},
            "task": {"string_value": "sentiment"},
            "precision": {"string_value": "fp32"},
            "labels": {"string_value": "negative,positive"},
        },
    }
    for ours, described in (
        (config["input"], metadata["inputs"]),
        (config["output"], metadata["outputs"]),
    ):
        assert [(t["name"], t["dims"]) for t in ours] == [
            (t["name"], t["shape"]) for t in described
        ]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v2/models/nope/config", 404), ("/v2/models/sentiment/versions/9/config", 404)],
)
def test_the_configuration_of_a_model_not_served_is_a_404(ner_client, path, status) -> None:
    response = ner_client.get(path)

    assert response.status_code == status
    assert set(response.get_json()) == {"error"}


@pytest.mark.parametrize(
    "path", ["/v2/models/sentiment", f"/v2/models/sentiment/versions/{VERSION}"]
)
def test_sentiment_metadata_names_labels_and_the_provider(ner_client, path: str) -> None:
    body = ner_client.get(path).get_json()

    assert body["name"] == "sentiment"
    assert body["versions"] == [VERSION]
    assert body["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert body["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "score", "datatype": "FP32", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]
    assert body["parameters"]["labels"] == ["negative", "positive"]
    assert body["parameters"]["execution_providers"] == ["CPUExecutionProvider"]


def test_ner_metadata(ner_client: FlaskClient) -> None:
    body = ner_client.get("/v2/models/ner").get_json()

    assert body["versions"] == [TINY_NER_VERSION]
    assert body["outputs"] == [{"name": "entities", "datatype": "BYTES", "shape": [-1]}]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/sentiment/ready", 200),
        (f"/v2/models/ner/versions/{TINY_NER_VERSION}/ready", 200),
        ("/v2/models/translation/ready", 404),
        ("/v2/models/sentiment/versions/9.9.9/ready", 404),
        ("/v2/models/translation", 404),
        ("/v2/models/sentiment/versions/9.9.9", 404),
    ],
)
def test_model_readiness_and_unknown_models(ner_client, path: str, status: int) -> None:
    response = ner_client.get(path)

    assert response.status_code == status
    body = response.get_json()
    if status == 200:
        assert body == {"name": path.split("/")[3], "ready": True}
    else:
        assert set(body) == {"error"} and isinstance(body["error"], str)


def test_a_model_that_failed_to_load_is_not_ready_and_says_why(app_factory, tmp_path: Path):
    vocab = build_tiny_artifact(tmp_path / "sentiment") / "vocab.json"
    vocab.write_text(vocab.read_text("utf-8").replace("awful", "awfull"), "utf-8")
    client = app_factory(tmp_path).test_client()

    response = client.get("/v2/models/sentiment/ready")

    assert response.status_code == 503
    assert "sha256 mismatch" in response.get_json()["error"]


# --- inference, JSON -----------------------------------------------------------------------


def test_sentiment_json_inference_matches_v1(ner_client: FlaskClient) -> None:
    status, body = infer(
        ner_client, "sentiment", {"id": "r1", "inputs": [text_input(SENTIMENT_TEXTS)]}
    )

    assert status == 200
    assert (body["model_name"], body["model_version"], body["id"]) == ("sentiment", VERSION, "r1")
    out = outputs_by_name(body)
    expected = v1(ner_client, "sentiment", SENTIMENT_TEXTS)
    assert out["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [3],
        "data": [r["label"] for r in expected],
    }
    assert out["score"]["data"] == [r["score"] for r in expected]
    assert out["probabilities"]["shape"] == [3, 2]
    probabilities = np.array(out["probabilities"]["data"]).reshape(3, 2)
    assert probabilities.tolist() == [
        [r["scores"]["negative"], r["scores"]["positive"]] for r in expected
    ]


def test_ner_json_inference_matches_v1(ner_client: FlaskClient) -> None:
    status, body = infer(ner_client, "ner", {"inputs": [text_input(NER_TEXTS)]})

    assert status == 200
    (entities,) = body["outputs"]
    assert (entities["datatype"], entities["shape"]) == ("BYTES", [2])
    expected = [r["entities"] for r in v1(ner_client, "ner", NER_TEXTS)]
    assert [json.loads(e) for e in entities["data"]] == expected


def test_only_the_requested_outputs_come_back(ner_client: FlaskClient) -> None:
    body = {"inputs": [text_input(["good"])], "outputs": [{"name": "score"}]}

    status, answer = infer(ner_client, "sentiment", body)

    assert status == 200
    assert [o["name"] for o in answer["outputs"]] == ["score"]


def test_no_outputs_or_an_empty_list_means_every_output(ner_client: FlaskClient) -> None:
    """As KServe's server reads ``"outputs": []``."""
    every = [
        o["name"]
        for o in infer(ner_client, "sentiment", {"inputs": [text_input(["a"])]})[1]["outputs"]
    ]
    status, answer = infer(ner_client, "sentiment", {"inputs": [text_input(["a"])], "outputs": []})

    assert status == 200 and [o["name"] for o in answer["outputs"]] == every
    assert set(every) == {"label", "score", "probabilities"}


def test_outputs_come_in_the_order_asked_for(ner_client: FlaskClient) -> None:
    """As Triton answers (and the gRPC form of the protocol here)."""
    wanted = [{"name": "probabilities"}, {"name": "label"}]

    status, answer = infer(
        ner_client, "sentiment", {"inputs": [text_input(["a"])], "outputs": wanted}
    )

    assert status == 200 and [o["name"] for o in answer["outputs"]] == ["probabilities", "label"]


def test_kserve_clients_model_name_and_null_parameters_are_accepted(ner_client) -> None:
    """KServe's Python client puts ``model_name`` (and ``model_version``) in the body, and
    clients writing absent fields as null send ``"parameters": null`` at every level."""
    body = {
        "id": "k-1",
        "model_name": "sentiment",
        "model_version": VERSION,
        "parameters": None,
        "inputs": [{**text_input(["a great movie"]), "parameters": None}],
        "outputs": [{"name": "label", "parameters": None}],
    }

    status, answer = infer(ner_client, "sentiment", body)

    assert status == 200 and answer["id"] == "k-1"
    assert outputs_by_name(answer)["label"]["data"] == [
        v1(ner_client, "sentiment", ["a great movie"])[0]["label"]
    ]


def test_nested_row_major_data_is_accepted(ner_client: FlaskClient) -> None:
    body = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [["good"], ["bad"]]}]
    }

    status, answer = infer(ner_client, "sentiment", body)

    assert status == 200
    assert outputs_by_name(answer)["label"]["data"] == ["positive", "negative"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{**text_input(["good"]), "name": "texts"}]}, "exactly one input, 'text'"),
        ({"inputs": [text_input(["good"]), text_input(["bad"])]}, "exactly one input"),
        ({"inputs": [{**text_input(["good"]), "datatype": "FP32"}]}, "must be BYTES"),
        ({"inputs": [{**text_input(["good"]), "shape": [1, 1]}]}, "shape [N]"),
        ({"inputs": [{**text_input(["good"]), "shape": [2]}]}, "but 1 elements"),
        (
            {"inputs": [{**text_input(["good"]), "shape": [True]}]},
            "inputs[0].shape[0]: Input should be",
        ),
        (
            {"inputs": [{**text_input(["good"]), "shape": ["1"]}]},
            "inputs[0].shape[0]: Input should be",
        ),
        (
            {"inputs": [{**text_input(["good"]), "shape": [1.0]}]},
            "inputs[0].shape[0]: Input should be",
        ),
        ({"inputs": [text_input(["\ud800"])]}, "text[0]: text contains an unpaired UTF-16"),
        ({"inputs": [text_input([""])]}, "text[0]: text is empty"),
        ({"inputs": [text_input([7])]}, "text[0]: input should be a valid string"),
        ({"inputs": [text_input(["good"] * 101)]}, "at most 100 texts"),
        ({"inputs": [{k: v for k, v in text_input(["good"]).items() if k != "data"}]}, "neither"),
        (
            {"inputs": [{**text_input(["good"]), "parameters": {"binary_data_size": 4}}]},
            "input 'text' has both 'data' and binary_data_size",
        ),
        ({"inputs": [text_input(["good"])], "outputs": [{"name": "logits"}]}, "unknown output"),
        (
            {"inputs": [text_input(["good"])], "outputs": [{"name": "score"}, {"name": "score"}]},
            "outputs[1]: output 'score' is requested twice",
        ),
        (
            {"model_name": "ner", "inputs": [text_input(["good"])]},
            "model_name 'ner' in the body is not the model of the URL, 'sentiment'",
        ),
        ({"inputs": [text_input(["good"])], "modelname": "x"}, "modelname: Extra inputs"),
        ({"inputs": "text"}, "invalid inference request"),
        ({}, "invalid inference request: inputs: Field required"),
    ],
)
def test_bad_requests_are_a_400_with_an_error_string(ner_client, body: dict, message: str) -> None:
    status, answer = infer(ner_client, "sentiment", body)

    assert status == 400
    assert set(answer) == {"error"}
    assert message in answer["error"]


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, [False]])
@pytest.mark.parametrize(
    ("where", "parameter"),
    [(None, "parameters.binary_data_output"), (0, "outputs[0].parameters.binary_data")],
)
def test_binary_data_flags_must_be_json_booleans(ner_client, where, parameter, value) -> None:
    body: dict = {"inputs": [text_input(["good"])]}
    if where is None:
        body["parameters"] = {"binary_data_output": value}
    else:
        body["outputs"] = [{"name": "label", "parameters": {"binary_data": value}}]

    status, answer = infer(ner_client, "sentiment", body)

    assert status == 400
    assert set(answer) == {"error"}
    assert f"{parameter} must be a boolean" in answer["error"]


@pytest.mark.parametrize(
    ("default", "label_binary", "binary_outputs"),
    [
        (False, None, set()),
        (True, None, {"label", "score"}),
        (True, False, {"score"}),
        (False, True, {"label"}),
    ],
)
def test_binary_data_flags_choose_binary_or_json_per_output(
    ner_client, default: bool, label_binary: bool | None, binary_outputs: set[str]
) -> None:
    label: dict = {"name": "label"}
    if label_binary is not None:
        label["parameters"] = {"binary_data": label_binary}
    body = {
        "inputs": [text_input(["good"])],
        "parameters": {"binary_data_output": default},
        "outputs": [label, {"name": "score"}],
    }

    response = ner_client.post("/v2/models/sentiment/infer", json=body)

    assert response.status_code == 200
    length = response.headers.get("Inference-Header-Content-Length")
    header = json.loads(response.data[: int(length)] if length else response.data)
    outputs = outputs_by_name(header)
    assert {name for name, o in outputs.items() if "data" not in o} == binary_outputs
    assert {
        name for name, o in outputs.items() if "binary_data_size" in o.get("parameters", {})
    } == (binary_outputs)


@pytest.mark.parametrize("data", [b"", b"{not json", b"[1, 2]"])
def test_a_body_that_is_not_an_inference_request_is_a_400(ner_client, data: bytes) -> None:
    response = ner_client.post("/v2/models/sentiment/infer", data=data)

    assert response.status_code == 400
    assert isinstance(response.get_json()["error"], str)


def test_infer_on_an_unknown_model_or_version_is_a_404(ner_client: FlaskClient) -> None:
    body = {"inputs": [text_input(["good"])]}

    assert infer(ner_client, "translation", body)[0] == 404
    response = ner_client.post("/v2/models/sentiment/versions/2/infer", json=body)
    assert response.status_code == 404
    assert "no version '2'" in response.get_json()["error"]
    status, answer = infer(ner_client, "sentiment", {**body, "model_version": "2"})
    assert status == 404 and "no version '2'" in answer["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/v2/models/sentiment/infer", 405),
        ("delete", "/v2", 405),
        ("put", "/v2/models/sentiment/ready", 405),
        ("get", "/v2/models/sentiment/nosuch", 404),
        ("get", "/v2/nosuch", 404),
        ("get", "/v2/", 404),
        ("post", "/v2/models/sentiment/versions//infer", 404),  # an empty version: no route
        ("get", "/v2//models/sentiment", 404),  # not redirected to /v2/models/sentiment
    ],
)
def test_routing_errors_under_v2_have_the_protocol_error_shape(
    ner_client, method: str, path: str, status: int
) -> None:
    response = getattr(ner_client, method)(path)

    assert response.status_code == status
    assert response.get_json() == {"error": response.get_json()["error"]}
    assert isinstance(response.get_json()["error"], str)
    assert path in response.get_json()["error"]
    if status == 405:
        assert response.headers["Allow"]


def test_a_v2_body_over_the_size_limit_has_the_protocol_error_shape(
    app_factory, tiny_model_dir: Path
) -> None:
    client = app_factory(tiny_model_dir, max_body_bytes=1024).test_client()

    status, answer = infer(client, "sentiment", {"inputs": [text_input(["good " * 400])]})

    assert status == 413
    assert set(answer) == {"error"}
    assert "larger than 1024 bytes" in answer["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/v1/sentiment", 405),
        ("get", "/v1/nosuch", 404),
        ("get", "/nosuch", 404),
        ("get", "/v2health", 404),
        ("post", "/v2/health/ready", 405),  # the service's own probe, documented in /openapi.json
        ("post", "/v1//sentiment", 404),
    ],
)
def test_routing_errors_elsewhere_keep_the_service_error_shape(
    ner_client, method: str, path: str, status: int
) -> None:
    response = getattr(ner_client, method)(path)

    assert response.status_code == status
    assert set(response.get_json()["error"]) == {"code", "message", "details"}


# --- the stock tritonclient over real HTTP --------------------------------------------------


@pytest.fixture(scope="module")
def triton_client(tiny_ner_model_dir: Path) -> Iterator[triton.InferenceServerClient]:
    from service import create_app
    from tests.service.conftest import make_settings

    app: Flask = create_app(make_settings(tiny_ner_model_dir))
    with serving_in_thread(app) as url:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        yield client
        client.close()


def text_tensor(texts: list[str], binary_data: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary_data)
    return tensor


def test_tritonclient_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("sentiment")
    assert triton_client.is_model_ready("ner", model_version=TINY_NER_VERSION)
    assert not triton_client.is_model_ready("translation")
    extensions = ["binary_tensor_data", "model_configuration", "statistics"]
    assert triton_client.get_server_metadata()["extensions"] == extensions
    metadata = triton_client.get_model_metadata("sentiment")
    assert metadata["parameters"]["labels"] == ["negative", "positive"]
    config = triton_client.get_model_config("ner", model_version=TINY_NER_VERSION)
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}]


def test_tritonclient_sentiment_with_default_binary_data(ner_client, triton_client) -> None:
    result = triton_client.infer("sentiment", [text_tensor(SENTIMENT_TEXTS)])

    expected = v1(ner_client, "sentiment", SENTIMENT_TEXTS)
    assert result.as_numpy("label").tolist() == [r["label"].encode() for r in expected]
    assert result.as_numpy("score").dtype == np.float32
    assert result.as_numpy("score").tolist() == [r["score"] for r in expected]
    assert result.as_numpy("probabilities").shape == (3, 2)
    assert result.as_numpy("probabilities").tolist() == [
        [r["scores"]["negative"], r["scores"]["positive"]] for r in expected
    ]
    assert result.get_output("label")["parameters"]["binary_data_size"] > 0


def test_tritonclient_class_count_is_refused_not_ignored(triton_client) -> None:
    wanted = triton.InferRequestedOutput("probabilities", class_count=1)

    with pytest.raises(InferenceServerException, match="classification extension"):
        triton_client.infer("sentiment", [text_tensor(SENTIMENT_TEXTS)], outputs=[wanted])


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(ner_client, triton_client, algorithm: str) -> None:
    result = triton_client.infer(
        "sentiment", [text_tensor(SENTIMENT_TEXTS)], request_compression_algorithm=algorithm
    )

    expected = v1(ner_client, "sentiment", SENTIMENT_TEXTS)
    assert result.as_numpy("label").tolist() == [r["label"].encode() for r in expected]


@pytest.mark.parametrize(
    ("binary_in", "binary_out"), [(True, False), (False, True), (False, False)]
)
def test_tritonclient_ner_in_every_binary_json_mix(
    ner_client, triton_client, binary_in: bool, binary_out: bool
) -> None:
    outputs = [triton.InferRequestedOutput("entities", binary_data=binary_out)]
    result = triton_client.infer(
        "ner", [text_tensor(NER_TEXTS, binary_in)], outputs=outputs, model_version=TINY_NER_VERSION
    )

    expected = [r["entities"] for r in v1(ner_client, "ner", NER_TEXTS)]
    assert [json.loads(e) for e in result.as_numpy("entities")] == expected


def test_tritonclient_sees_errors_as_exceptions(triton_client) -> None:
    with pytest.raises(InferenceServerException, match="text is empty"):
        triton_client.infer("sentiment", [text_tensor(["good", " "])])
    with pytest.raises(InferenceServerException, match="unknown model 'translation'"):
        triton_client.infer("translation", [text_tensor(["good"])])


# --- translation -----------------------------------------------------------------------------

TRANSLATION_TEXTS = ["A dog sleeps in the snow.", "Two men play at the beach.", "A woman sits."]


def v1_translate(client: FlaskClient, texts: list[str], **params) -> list[dict]:
    response = client.post("/v1/translate", json={"texts": texts, **params})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def test_translation_metadata(translation_client: FlaskClient) -> None:
    body = translation_client.get("/v2/models/translation").get_json()

    assert body["parameters"]["task"] == "translation"
    assert body["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert body["outputs"] == [
        {"name": "translation", "datatype": "BYTES", "shape": [-1]},
        {"name": "score", "datatype": "FP32", "shape": [-1]},
    ]
    assert translation_client.get("/v2/models/translation/ready").status_code == 200


@pytest.mark.parametrize("parameters", [{}, {"beam_size": 1}, {"beam_size": 3, "max_length": 4}])
def test_translation_json_inference_matches_v1(translation_client, parameters: dict) -> None:
    body = {"inputs": [text_input(TRANSLATION_TEXTS)], "parameters": parameters}
    status, answer = infer(translation_client, "translation", body)

    assert status == 200, answer
    outputs = outputs_by_name(answer)
    expected = v1_translate(translation_client, TRANSLATION_TEXTS, **parameters)
    assert outputs["translation"]["shape"] == [3]
    assert outputs["translation"]["data"] == [r["translation"] for r in expected]
    assert outputs["score"]["datatype"] == "FP32"
    assert outputs["score"]["data"] == pytest.approx([r["score"] for r in expected], abs=1e-5)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"beam_size": 0}, "parameters.beam_size: Input should be greater than or equal to 1"),
        ({"beam_size": 11}, "parameters.beam_size: Input should be less than or equal to 10"),
        ({"beam_size": "5"}, "parameters.beam_size: input should be a valid integer"),
        ({"beam_size": True}, "parameters.beam_size: input should be a valid integer"),
        ({"max_length": 0}, "parameters.max_length: Input should be greater than or equal to 1"),
        ({"max_length": 1.5}, "parameters.max_length: Input should be a valid integer, got a"),
    ],
)
def test_bad_translation_parameters_are_a_400(translation_client, parameters, message) -> None:
    body = {"inputs": [text_input(["A dog runs."])], "parameters": parameters}
    status, answer = infer(translation_client, "translation", body)

    assert status == 400
    assert set(answer) == {"error"}
    assert message in answer["error"]


def test_a_translation_text_with_nothing_to_translate_is_a_400(translation_client) -> None:
    body = {"inputs": [text_input(["A dog runs.", "\u0000\u200b"])]}
    status, answer = infer(translation_client, "translation", body)

    assert status == 400
    assert answer["error"].startswith("text[1]: text has nothing to translate")


@pytest.fixture(scope="module")
def translation_triton(tiny_translation_model_dir: Path) -> Iterator[triton.InferenceServerClient]:
    from service import create_app
    from tests.service.conftest import make_settings

    app: Flask = create_app(make_settings(tiny_translation_model_dir))
    with serving_in_thread(app) as url:
        client = triton.InferenceServerClient(url=url.removeprefix("http://"))
        yield client
        client.close()


@pytest.mark.parametrize(
    ("binary_in", "binary_out"), [(True, True), (True, False), (False, True), (False, False)]
)
@pytest.mark.parametrize("beam_size", [None, 1, 4])
def test_tritonclient_translation_in_every_binary_json_mix(
    translation_client, translation_triton, binary_in: bool, binary_out: bool, beam_size
) -> None:
    outputs = [
        triton.InferRequestedOutput("translation", binary_data=binary_out),
        triton.InferRequestedOutput("score", binary_data=binary_out),
    ]
    parameters = None if beam_size is None else {"beam_size": beam_size}
    result = translation_triton.infer(
        "translation",
        [text_tensor(TRANSLATION_TEXTS, binary_in)],
        outputs=outputs,
        parameters=parameters,
    )

    params = {} if beam_size is None else {"beam_size": beam_size}
    expected = v1_translate(translation_client, TRANSLATION_TEXTS, **params)
    translations = result.as_numpy("translation")
    assert translations.shape == (3,)
    # tritonclient gives bytes for binary outputs, str for JSON ones.
    texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in translations]
    assert texts == [r["translation"] for r in expected]
    scores = result.as_numpy("score")
    assert scores.dtype == np.float32
    assert scores.tolist() == pytest.approx([r["score"] for r in expected], abs=1e-5)


def test_tritonclient_sees_bad_translation_parameters_as_exceptions(translation_triton) -> None:
    with pytest.raises(InferenceServerException, match=r"parameters\.beam_size"):
        translation_triton.infer(
            "translation", [text_tensor(["A dog runs."])], parameters={"beam_size": 0}
        )
    with pytest.raises(InferenceServerException, match="text is empty"):
        translation_triton.infer("translation", [text_tensor(["A dog runs.", " "])])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", 'must be a JSON object such as {"inputs": [...]}, got an array'),
        (b'{"inputs": [', "request body is not valid JSON: Expecting value"),
        (b'{"id": ' + b"9" * 5000 + b"}", "a number of more than 4300 digits"),
    ],
)
def test_a_v2_body_that_is_no_json_object_is_a_400_saying_why(ner_client, body, message) -> None:
    response = ner_client.post("/v2/models/sentiment/infer", data=body)

    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_v2_reads_json_bodies_as_v1_does(ner_client: FlaskClient) -> None:
    """A byte order mark or UTF-16, which JSON allows a reader to accept and /v1 accepts."""
    body = json.dumps({"inputs": [text_input(["good"])]})
    for raw in (b"\xef\xbb\xbf" + body.encode(), body.encode("utf-16")):
        response = ner_client.post("/v2/models/sentiment/infer", data=raw)

        assert response.status_code == 200, response.get_json()


def test_the_translation_configuration_has_no_labels(translation_client) -> None:
    config = translation_client.get("/v2/models/translation/config").get_json()

    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert config["output"] == [
        {"name": "translation", "data_type": "TYPE_STRING", "dims": [-1]},
        {"name": "score", "data_type": "TYPE_FP32", "dims": [-1]},
    ]
    assert set(config["parameters"]) == {"version", "task", "precision"}


def test_the_repository_index_lists_every_configured_model_and_its_state(
    app_factory, tiny_model_dir
) -> None:
    client = app_factory(tiny_model_dir, models=("sentiment", "nosuch")).test_client()

    everything = client.post("/v2/repository/index")
    ready = client.post("/v2/repository/index", json={"ready": True})

    assert everything.status_code == ready.status_code == 200
    nosuch, sentiment = everything.get_json()
    assert sentiment == {"name": "sentiment", "version": VERSION, "state": "READY"}
    assert nosuch["name"] == "nosuch" and nosuch["state"] == "UNAVAILABLE"
    assert "model folder does not exist" in nosuch["reason"] and "version" not in nosuch
    assert ready.get_json() == [sentiment]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ready": "yes please"}, "ready: Input should be a valid boolean"),
        ({"repository_name": "other"}, "no repository 'other'"),
        ({"readonly": True}, "readonly: Extra inputs"),
        ([], "JSON object"),
    ],
)
def test_a_bad_repository_index_request_is_a_400(ner_client, body, message) -> None:
    response = ner_client.post("/v2/repository/index", json=body)

    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_tritonclient_reads_the_repository_index(triton_client) -> None:
    index = triton_client.get_model_repository_index()

    assert [(m["name"], m["state"]) for m in index] == [("ner", "READY"), ("sentiment", "READY")]
    assert index[0]["version"] == TINY_NER_VERSION
