"""MODEL_PRECISION: the int8 variant of each model that has one, fp32 for the others."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from flask import Flask
from pydantic import ValidationError

from service import REGISTRY_KEY
from service.runtime.manifest import ArtifactError, load_manifest
from service.settings import Settings
from tests.service.tiny_artifact import build_tiny_artifact
from tests.service.tiny_ner_artifact import build_tiny_ner_artifact
from tests.service.tiny_variant import INT8_METRICS, add_int8_variant


@pytest.fixture
def variant_model_dir(tmp_path: Path) -> Path:
    """A MODEL_DIR with a tiny sentiment model that has an int8 variant and an NER model that
    has none."""
    add_int8_variant(build_tiny_artifact(tmp_path / "models" / "sentiment"))
    build_tiny_ner_artifact(tmp_path / "models" / "ner")
    return tmp_path / "models"


def listed(app: Flask) -> dict[str, dict]:
    response = app.test_client().get("/v1/models")
    assert response.status_code == 200
    return {m["name"]: m for m in response.get_json()["models"]}


def graph_file(app: Flask, name: str) -> str:
    return app.extensions[REGISTRY_KEY].models[name].predictor.session.path.name


def test_int8_loads_the_variant_and_reports_it(app_factory, variant_model_dir: Path) -> None:
    app = app_factory(variant_model_dir, model_precision="int8")

    models = listed(app)

    assert graph_file(app, "sentiment") == "model.int8.onnx"
    assert models["sentiment"]["precision"] == "int8"
    assert models["sentiment"]["metrics"] == INT8_METRICS
    response = app.test_client().post("/v1/sentiment", json={"texts": ["a great movie"]})
    assert response.status_code == 200
    assert response.get_json()["results"][0]["label"] == "positive"
    metadata = app.test_client().get("/v2/models/sentiment").get_json()["parameters"]
    assert (metadata["precision"], metadata["metrics"]) == ("int8", INT8_METRICS)


def test_a_model_without_a_variant_serves_fp32_with_a_warning(
    app_factory, variant_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service"):
        app = app_factory(variant_model_dir, model_precision="int8")

    ner = listed(app)["ner"]
    assert ner["precision"] == "fp32"
    assert ner["metrics"] == load_manifest(variant_model_dir / "ner").metrics
    assert "model 'ner' has no int8 variant" in caplog.text
    assert app.test_client().get("/v2/health/ready").status_code == 200


def test_fp32_is_the_default_even_when_a_variant_exists(
    app_factory, variant_model_dir: Path
) -> None:
    app = app_factory(variant_model_dir)

    sentiment = listed(app)["sentiment"]

    assert graph_file(app, "sentiment") == "model.onnx"
    assert sentiment["precision"] == "fp32"
    assert sentiment["metrics"] == load_manifest(variant_model_dir / "sentiment").metrics


def test_a_reload_keeps_the_precision(admin_app_factory, variant_model_dir: Path) -> None:
    app = admin_app_factory(variant_model_dir, model_precision="int8")

    response = app.test_client().post("/v1/models/sentiment/reload")

    assert response.status_code == 200
    assert response.get_json()["model"]["precision"] == "int8"
    assert graph_file(app, "sentiment") == "model.int8.onnx"


def test_a_variant_recorded_with_force_loads_with_a_warning(
    app_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_int8_variant(build_tiny_artifact(tmp_path / "models" / "sentiment"), qualified=False)

    with caplog.at_level(logging.WARNING, logger="service"):
        app = app_factory(tmp_path / "models", model_precision="int8")

    assert listed(app)["sentiment"]["precision"] == "int8"
    assert "recorded with --force" in caplog.text


def test_a_tampered_variant_file_fails_the_load(app_factory, variant_model_dir: Path) -> None:
    (variant_model_dir / "sentiment" / "model.int8.onnx").write_bytes(b"not the verified graph")

    app = app_factory(variant_model_dir, model_precision="int8", models=("sentiment",))

    response = app.test_client().get("/v2/health/ready")
    assert response.status_code == 503
    assert "model.int8.onnx: sha256 mismatch" in response.get_data(as_text=True)


# --- the manifest's variants ----------------------------------------------------------------


def test_a_manifest_without_variants_is_valid(own_model_dir: Path) -> None:
    assert load_manifest(own_model_dir / "sentiment").variants == {}


def test_a_variant_is_read_back_with_its_files_hashed(tmp_path: Path) -> None:
    folder = add_int8_variant(build_tiny_artifact(tmp_path / "sentiment"))

    manifest = load_manifest(folder)

    variant = manifest.variants["int8"]
    assert variant.graphs == {"model": "model.int8.onnx"}
    assert variant.qualified
    assert "model.int8.onnx" in manifest.files
    assert manifest.path_of(folder, "model", "int8") == folder / "model.int8.onnx"
    assert manifest.path_of(folder, "model") == folder / "model.onnx"


def _edit_manifest(folder: Path, old: str, new: str) -> None:
    path = folder / "manifest.json"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new), "utf-8")


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ('"int8": {', '"int4": {', "variants.int4"),
        ('"model": "model.int8.onnx"', '"encoder": "model.int8.onnx"', "variant 'int8' has"),
        ('"qualified": true', '"qualified": true, "extra": 1', "extra"),
    ],
)
def test_an_invalid_variant_is_refused(tmp_path: Path, old: str, new: str, error: str) -> None:
    folder = add_int8_variant(build_tiny_artifact(tmp_path / "sentiment"))
    _edit_manifest(folder, old, new)

    with pytest.raises(ArtifactError, match=error):
        load_manifest(folder)


def test_a_variant_graph_without_a_checksum_is_refused(tmp_path: Path) -> None:
    folder = add_int8_variant(build_tiny_artifact(tmp_path / "sentiment"))
    shutil.copy(folder / "model.int8.onnx", folder / "other.onnx")
    _edit_manifest(folder, '"model": "model.int8.onnx"', '"model": "other.onnx"')

    with pytest.raises(ArtifactError, match=r"graph file 'other\.onnx' has no sha256"):
        load_manifest(folder)


# --- the setting ------------------------------------------------------------------------------


@pytest.fixture
def no_precision_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("MODEL_PRECISION", raising=False)
    return monkeypatch


def test_precision_defaults_to_fp32(no_precision_env: pytest.MonkeyPatch) -> None:
    assert Settings().model_precision == "fp32"


def test_precision_is_read_from_the_environment(no_precision_env: pytest.MonkeyPatch) -> None:
    no_precision_env.setenv("MODEL_PRECISION", " INT8 ")

    assert Settings().model_precision == "int8"


def test_a_bad_precision_names_the_variable_and_the_choices(
    no_precision_env: pytest.MonkeyPatch,
) -> None:
    no_precision_env.setenv("MODEL_PRECISION", "fp16")

    with pytest.raises(ValidationError) as error:
        Settings()

    message = str(error.value)
    assert "model_precision" in message
    assert "'fp32' or 'int8'" in message
