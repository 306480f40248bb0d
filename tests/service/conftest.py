"""Fixtures for the service tests: settings, apps and clients over the tiny artifacts
(``tiny_artifact.py``, ``tiny_ner_artifact.py``, ``tiny_translation_artifact.py``) or over the
committed ones in ``exported_models/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service import create_app
from service.settings import Settings
from tests.service.tiny_artifact import build_tiny_artifact
from tests.service.tiny_ner_artifact import build_tiny_ner_artifact
from tests.service.tiny_translation_artifact import build_tiny_translation_artifact

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_MODEL_DIR = REPO_ROOT / "exported_models"


def make_settings(model_dir: Path, **overrides: object) -> Settings:
    """Test settings: explicit values, so the caller's environment cannot change them."""
    values: dict[str, object] = {
        "model_dir": model_dir,
        "models": (),
        "ort_providers": "cpu",
        "ort_intra_op_threads": 1,
        "ort_inter_op_threads": 1,
        "max_texts_per_request": 100,
        "max_text_chars": 500,
        "max_body_bytes": 16 * 1024,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODEL_DIR holding one tiny ``sentiment`` model (shared, so never modify it)."""
    model_dir = tmp_path_factory.mktemp("models")
    build_tiny_artifact(model_dir / "sentiment")
    return model_dir


@pytest.fixture(scope="session")
def tiny_ner_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MODEL_DIR holding a tiny ``ner`` and a tiny ``sentiment`` model (shared: never modify)."""
    model_dir = tmp_path_factory.mktemp("models-with-ner")
    build_tiny_artifact(model_dir / "sentiment")
    build_tiny_ner_artifact(model_dir / "ner")
    return model_dir


@pytest.fixture(scope="session")
def ner_app(tiny_ner_model_dir: Path) -> Flask:
    """One app over ``tiny_ner_model_dir`` for the whole session (tests must not alter it)."""
    app = create_app(make_settings(tiny_ner_model_dir))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def ner_client(ner_app: Flask) -> FlaskClient:
    return ner_app.test_client()


@pytest.fixture(scope="session")
def tiny_translation_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained and exported ``translation`` model folder (built once, in seconds; shared,
    so never modify it: copy it into a model dir instead)."""
    work_dir = tmp_path_factory.mktemp("translation-build")
    return build_tiny_translation_artifact(work_dir / "translation", work_dir)


@pytest.fixture(scope="session")
def tiny_translation_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_translation_artifact: Path
) -> Path:
    """A MODEL_DIR holding a tiny ``translation`` and a tiny ``sentiment`` model (shared: never
    modify)."""
    model_dir = tmp_path_factory.mktemp("models-with-translation")
    build_tiny_artifact(model_dir / "sentiment")
    shutil.copytree(tiny_translation_artifact, model_dir / "translation")
    return model_dir


@pytest.fixture(scope="session")
def translation_app(tiny_translation_model_dir: Path) -> Flask:
    """One app over ``tiny_translation_model_dir`` for the whole session (tests must not alter
    it)."""
    app = create_app(make_settings(tiny_translation_model_dir))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def translation_client(translation_app: Flask) -> FlaskClient:
    return translation_app.test_client()


@pytest.fixture
def own_model_dir(tmp_path: Path) -> Path:
    """A MODEL_DIR with a fresh tiny ``sentiment`` model that a test may break."""
    build_tiny_artifact(tmp_path / "models" / "sentiment")
    return tmp_path / "models"


@pytest.fixture
def settings(tiny_model_dir: Path) -> Settings:
    return make_settings(tiny_model_dir)


@pytest.fixture
def app(settings: Settings) -> Flask:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_factory() -> Callable[..., Flask]:
    """Build an app for ``model_dir`` with settings overrides: ``app_factory(dir, models=...)``."""

    def build(model_dir: Path, **overrides: object) -> Flask:
        return create_app(make_settings(model_dir, **overrides))

    return build


ADMIN_KEY = "admin-key-for-the-tests"


class AdminClient(FlaskClient):
    """A test client that sends ``ADMIN_KEY`` with every request."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_KEY}"


@pytest.fixture
def admin_app_factory() -> Callable[..., Flask]:
    """``app_factory`` with ``ADMIN_KEY`` as its admin key (reloading a model needs one), whose
    ``test_client()`` sends it."""

    def build(model_dir: Path, **overrides: object) -> Flask:
        app = create_app(make_settings(model_dir, admin_api_keys=(ADMIN_KEY,), **overrides))
        app.test_client_class = AdminClient
        return app

    return build


def require_real_artifact(name: str) -> Path:
    """``exported_models``, after checking that it holds the committed ``name`` model."""
    folder = REAL_MODEL_DIR / name
    assert (folder / "manifest.json").is_file(), (
        f"{folder} has no manifest.json: export the {name} model before running these tests"
    )
    return REAL_MODEL_DIR


@pytest.fixture
def real_model_dir() -> Path:
    """The committed sentiment artifact's MODEL_DIR; its absence is a failure, not a skip."""
    return require_real_artifact("sentiment")


@pytest.fixture
def real_ner_model_dir() -> Path:
    """The committed NER artifact's MODEL_DIR; its absence is a failure, not a skip."""
    return require_real_artifact("ner")


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for subprocesses, without variables that would change the service."""
    names = {name.upper() for name in Settings.model_fields} | {
        "WEB_CONCURRENCY",
        "PYTHONPATH",
        "PROMETHEUS_MULTIPROC_DIR",
    }
    return {k: v for k, v in os.environ.items() if k.upper() not in names}
