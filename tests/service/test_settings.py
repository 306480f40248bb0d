"""Settings come from environment variables and are validated once, at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.runtime.batcher import BatchPolicy
from service.runtime.registry import batch_policy
from service.settings import Settings, SettingsError

ENV_NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def no_service_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_work_from_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)

    settings = Settings()

    assert settings.model_dir == repo / "exported_models"
    assert settings.models == ()
    assert settings.ort_providers == "auto"
    assert (settings.ort_intra_op_threads, settings.ort_inter_op_threads) == (1, 1)
    assert settings.max_texts_per_request == 256
    assert settings.max_text_chars == 20_000
    assert settings.max_body_bytes == 2 * 1024 * 1024
    assert settings.log_level == "INFO"


def test_model_dir_falls_back_to_the_repository_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no exported_models/ here

    assert Settings().model_dir == Path(__file__).resolve().parents[2] / "exported_models"


def test_a_relative_model_dir_is_resolved_against_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_DIR", "artifacts")

    assert Settings().model_dir == tmp_path / "artifacts"


def test_values_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELS", " sentiment, ner ,")
    monkeypatch.setenv("ORT_PROVIDERS", "CPU")
    monkeypatch.setenv("ORT_INTRA_OP_THREADS", "2")
    monkeypatch.setenv("MAX_TEXTS_PER_REQUEST", "10")
    monkeypatch.setenv("LOG_LEVEL", "debug")

    settings = Settings()

    assert settings.models == ("sentiment", "ner")
    assert settings.ort_providers == "cpu"
    assert settings.ort_intra_op_threads == 2
    assert settings.max_texts_per_request == 10
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORT_PROVIDERS", "tpu"),
        ("ORT_INTRA_OP_THREADS", "0"),
        ("MAX_TEXTS_PER_REQUEST", "many"),
        ("MAX_BODY_BYTES", "10"),
        ("LOG_LEVEL", "LOUD"),
        ("GRPC_PORT", "0"),
        ("GRPC_PORT", "grpc"),
        ("REQUEST_TIMEOUT_S", "0"),  # every batched request would be a 504
    ],
)
def test_an_invalid_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError, match=rf"^invalid settings: {name}='{value}': "):
        Settings.from_environment()


def test_every_invalid_value_is_named_and_api_keys_are_not_repeated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHING", "maybe")
    monkeypatch.setenv("API_KEYS", "short-secret")
    monkeypatch.setenv("ADMIN_API_KEYS", "long-enough-admin-key,short-admin")
    monkeypatch.setenv("BATCH_OVERRIDES", '{"ner": {"min_fill": 2}}')

    with pytest.raises(SettingsError) as error:
        Settings.from_environment()

    message = str(error.value)
    assert "BATCHING='maybe': Input should be a valid boolean" in message
    assert "BATCH_OVERRIDES (ner.min_fill)=2: Input should be less than or equal to 1" in message
    assert "API_KEYS: Value error, every key needs at least 16 characters" in message
    assert "ADMIN_API_KEYS: Value error, every key needs at least 16 characters" in message
    assert "short-secret" not in message and "short-admin" not in message


@pytest.mark.parametrize(
    ("value", "port"), [(None, None), ("", None), ("  ", None), ("8001", 8001)]
)
def test_grpc_is_off_unless_grpc_port_names_a_port(
    monkeypatch: pytest.MonkeyPatch, value: str | None, port: int | None
) -> None:
    if value is not None:
        monkeypatch.setenv("GRPC_PORT", value)

    assert Settings.from_environment().grpc_port == port


def test_settings_are_immutable() -> None:
    settings = Settings()

    with pytest.raises(ValidationError):
        settings.max_text_chars = 1  # type: ignore[misc]


def test_batching_settings_and_per_model_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHING", "false")
    monkeypatch.setenv("BATCH_MAX_SIZE", "16")
    monkeypatch.setenv("BATCH_MAX_QUEUE_DELAY_MS", "4")
    monkeypatch.setenv("REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv(
        "BATCH_OVERRIDES",
        '{"ner": {"max_batch_size": 8, "max_queue_delay_ms": 0, "min_fill": 0.5}}',
    )

    settings = Settings()

    assert batch_policy(settings, "sentiment", min_fill=0.8) == BatchPolicy(
        enabled=False,
        max_batch_size=16,
        max_queue_delay_s=0.004,
        max_queue_size=64,
        timeout_s=2.5,
        min_fill=0.8,
    )
    ner = batch_policy(settings, "ner", min_fill=0.8)
    assert (ner.max_batch_size, ner.max_queue_delay_s, ner.max_queue_size) == (8, 0.0, 64)
    assert ner.min_fill == 0.5  # the override wins over the model's default


def test_an_unknown_batch_override_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_OVERRIDES", '{"ner": {"batch": 8}}')

    with pytest.raises(ValidationError, match="batch_overrides"):
        Settings()


def test_a_json_setting_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_OVERRIDES", "{bad")

    message = r"^invalid settings: BATCH_OVERRIDES is not valid JSON: Expecting property name"
    with pytest.raises(SettingsError, match=message):
        Settings.from_environment()
