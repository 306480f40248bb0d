"""Health probes and GET /v1/models, including the ways a model can fail to load."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.predictors.sentiment import SentimentPredictor
from service.runtime import session as session_module
from service.runtime.manifest import TensorSpec
from tests.service.tiny_artifact import build_tiny_artifact

READY = "/v2/health/ready"


def not_ready_message(client: FlaskClient) -> str:
    response = client.get(READY)
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "not_ready"
    return error["message"]


def test_live_is_200(client: FlaskClient) -> None:
    response = client.get("/v2/health/live")

    assert response.status_code == 200
    assert response.get_json() == {"status": "live", "live": True, "models": ["sentiment"]}


def test_ready_is_200_when_every_model_loaded(client: FlaskClient) -> None:
    response = client.get(READY)

    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "ready": True, "models": ["sentiment"]}


def test_a_corrupted_file_makes_readiness_fail_naming_the_file(app_factory, own_model_dir) -> None:
    vocab = own_model_dir / "sentiment" / "vocab.json"
    vocab.write_text(vocab.read_text("utf-8").replace("awful", "awfull"), "utf-8")
    client = app_factory(own_model_dir).test_client()

    message = not_ready_message(client)

    assert f"{vocab}: sha256 mismatch" in message
    assert client.get("/v2/health/live").status_code == 200  # the worker itself is alive
    assert client.post("/v1/sentiment", json={"texts": ["good"]}).status_code == 503


def test_a_missing_file_makes_readiness_fail_naming_the_file(app_factory, own_model_dir) -> None:
    graph = own_model_dir / "sentiment" / "model.onnx"
    graph.unlink()

    message = not_ready_message(app_factory(own_model_dir).test_client())

    assert f"{graph}: listed in the manifest but missing" in message


def test_graph_io_that_differs_from_the_manifest_fails_readiness(app_factory, tmp_path) -> None:
    wrong_inputs = [
        TensorSpec(name="input_ids", dtype="int64", shape=["batch", "tokens"]),
        TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
    ]
    build_tiny_artifact(tmp_path / "sentiment", inputs=wrong_inputs)

    message = not_ready_message(app_factory(tmp_path).test_client())

    assert "graph inputs token_ids: tensor(int64) rank 2" in message
    assert "differ from the manifest's input_ids: tensor(int64) rank 2" in message


def test_an_invalid_preprocessing_block_fails_readiness(app_factory, own_model_dir) -> None:
    manifest = own_model_dir / "sentiment" / "manifest.json"
    data = json.loads(manifest.read_text("utf-8"))
    data["preprocessing"]["lowercase_all"] = True
    manifest.write_text(json.dumps(data), "utf-8")

    message = not_ready_message(app_factory(own_model_dir).test_client())

    assert "manifest.preprocessing is invalid" in message


def test_one_broken_model_does_not_hide_the_others(app_factory, own_model_dir) -> None:
    (own_model_dir / "broken").mkdir()
    (own_model_dir / "broken" / "manifest.json").write_text("{}", "utf-8")
    client = app_factory(own_model_dir).test_client()

    message = not_ready_message(client)

    assert "broken: ArtifactError" in message
    assert client.post("/v1/sentiment", json={"texts": ["good"]}).status_code == 200


def test_a_second_model_of_a_task_is_named_in_the_log(app_factory, own_model_dir, caplog) -> None:
    shutil.copytree(own_model_dir / "sentiment", own_model_dir / "reviews")

    with caplog.at_level(logging.WARNING, logger="service"):
        client = app_factory(own_model_dir).test_client()

    assert "models reviews, sentiment are all sentiment models: /v1/sentiment serves 'reviews'" in (
        caplog.text
    )
    response = client.post("/v1/sentiment", json={"texts": ["good"]})
    assert response.get_json()["model"]["name"] == "reviews"


def test_models_selects_which_folders_load(app_factory, own_model_dir) -> None:
    (own_model_dir / "broken").mkdir()
    (own_model_dir / "broken" / "manifest.json").write_text("{}", "utf-8")

    client = app_factory(own_model_dir, models=("sentiment",)).test_client()

    assert client.get(READY).status_code == 200


def test_a_model_named_in_models_but_absent_fails_readiness(app_factory, tiny_model_dir) -> None:
    client = app_factory(tiny_model_dir, models=("sentiment", "ner")).test_client()

    assert "model folder does not exist" in not_ready_message(client)


def test_an_empty_model_dir_is_not_ready(admin_app_factory, tmp_path: Path) -> None:
    client = admin_app_factory(tmp_path).test_client()
    message = not_ready_message(client)

    assert f"no model to load: MODEL_DIR: no folder with a manifest.json in {tmp_path}" in message
    assert client.post("/v1/sentiment", json={"texts": ["good"]}).status_code == 503
    # the reason is the server's, not that of a model named MODEL_DIR
    assert client.get("/v2/models/MODEL_DIR/ready").status_code == 404
    assert client.post("/v1/models/MODEL_DIR/reload").status_code == 404


def test_a_model_dir_that_is_one_models_folder_says_to_name_its_parent(
    app_factory, tiny_model_dir: Path
) -> None:
    folder = tiny_model_dir / "sentiment"

    message = not_ready_message(app_factory(folder).test_client())

    assert (
        f"no folder with a manifest.json in {folder}, which is itself a model folder: MODEL_DIR "
        f"is the folder that holds the model folders, here {tiny_model_dir}"
    ) in message


def test_cuda_requested_but_unavailable_fails_readiness(
    app_factory, tiny_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        session_module.ort, "get_available_providers", lambda: ["CPUExecutionProvider"]
    )
    client = app_factory(tiny_model_dir, ort_providers="cuda").test_client()

    message = not_ready_message(client)

    assert "ORT_PROVIDERS=cuda" in message
    assert "onnxruntime-gpu" in message


def test_models_lists_manifest_facts_providers_and_precision(client: FlaskClient) -> None:
    response = client.get("/v1/models")

    assert response.status_code == 200
    assert response.get_json() == {
        "models": [
            {
                "name": "sentiment",
                "version": "0.0.1-test",
                "task": "sentiment",
                "created_at": "2026-01-01T00:00:00+00:00",
                "labels": ["negative", "positive"],
                "metrics": {"dev_accuracy": 0.5},
                "providers": ["CPUExecutionProvider"],
                "precision": "fp32",
            }
        ]
    }


def edit_manifest(folder: Path, edit) -> None:
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text("utf-8"))
    edit(data)
    manifest.write_text(json.dumps(data), "utf-8")


def test_a_file_the_model_reads_but_the_manifest_does_not_list_is_refused(
    app_factory, own_model_dir
) -> None:
    # An unlisted file has no sha256 to check: it would load whatever it holds.
    edit_manifest(own_model_dir / "sentiment", lambda data: data["files"].pop("vocab.json"))

    message = not_ready_message(app_factory(own_model_dir).test_client())

    assert "'vocab.json' has no sha256 in the manifest's files" in message


@pytest.mark.parametrize("name", ["../vocab.json", "/etc/passwd", "sub/vocab.json", ".."])
def test_a_manifest_file_name_must_stay_in_the_model_folder(
    app_factory, own_model_dir, name: str
) -> None:
    edit_manifest(own_model_dir / "sentiment", lambda data: data["files"].update({name: "0"}))

    message = not_ready_message(app_factory(own_model_dir).test_client())

    assert f"{name!r} is not a file name of the model's folder" in message


def test_a_folder_replaced_while_it_loads_is_refused(
    app_factory, own_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = own_model_dir / "sentiment"
    warm_up = SentimentPredictor.warm_up

    def replaced_meanwhile(predictor) -> None:  # as an export's rename swap would
        warm_up(predictor)
        edit_manifest(folder, lambda data: data.update(created_at="2099-01-01T00:00:00+00:00"))

    monkeypatch.setattr(SentimentPredictor, "warm_up", replaced_meanwhile)

    message = not_ready_message(app_factory(own_model_dir).test_client())

    assert "the folder changed while it loaded" in message


def test_labels_edited_in_the_manifest_are_refused(app_factory, own_model_dir) -> None:
    # The manifest has no checksum of its own: swapped labels would mislabel every answer.
    edit_manifest(own_model_dir / "sentiment", lambda data: data["labels"].reverse())

    message = not_ready_message(app_factory(own_model_dir).test_client())

    assert "the manifest's labels ['positive', 'negative'] are not labels.json's" in message


@pytest.mark.parametrize("max_tokens", [0, -1])
def test_preprocessing_values_out_of_range_are_refused(
    app_factory, own_model_dir, max_tokens: int
) -> None:
    # max_tokens 0 cut every text to nothing: one constant answer, and ready.
    folder = own_model_dir / "sentiment"
    edit_manifest(folder, lambda data: data["preprocessing"].update(max_tokens=max_tokens))

    message = not_ready_message(app_factory(own_model_dir).test_client())

    assert "manifest.preprocessing is invalid" in message and "max_tokens" in message
