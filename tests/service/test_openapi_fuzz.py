"""A short schemathesis run: generated requests to every documented endpoint get answers that
the OpenAPI document allows (status, content type, body schema), and never a 500."""

from __future__ import annotations

import shutil
from pathlib import Path

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 30


def test_generated_requests_get_documented_answers(
    app_factory, tiny_ner_model_dir: Path, tiny_translation_artifact: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"  # every task: sentiment, ner and translation
    shutil.copytree(tiny_ner_model_dir, model_dir)
    shutil.copytree(tiny_translation_artifact, model_dir / "translation")
    # Roomy limits: a sentence's joined length and the body size are checked by the server
    # but cannot be said in JSON Schema, so generated data must stay well within them.
    app: Flask = app_factory(model_dir, max_text_chars=20_000, max_body_bytes=8 * 1024 * 1024)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema = schema.exclude(path_regex="/reload$")  # tested in test_reload.py
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate()

        check()
