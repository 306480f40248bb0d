"""The committed exported_models/sentiment artifact, served through the app.

These tests fail (never skip) when the artifact is missing: the image ships it.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from service.runtime.manifest import load_manifest
from service.text.encoding import WordEncoderConfig

TEXTS = [
    "A moving, beautifully acted film that I will watch again.",
    "Dull, predictable and far too long; I walked out.",
    "ok",
    "The plot was thin but the actors were wonderful, and the ending surprised me.",
]


@pytest.fixture
def real_client(app_factory, real_model_dir) -> FlaskClient:
    """The app over the committed sentiment artifact alone (whatever else exported_models
    holds, e.g. ner, has its own tests), with the service's default request limits."""
    app = app_factory(
        real_model_dir,
        models=("sentiment",),
        max_texts_per_request=256,
        max_text_chars=20_000,
        max_body_bytes=2 * 1024 * 1024,
    )
    return app.test_client()


def test_the_committed_artifact_loads_and_is_ready(real_client: FlaskClient) -> None:
    assert real_client.get("/v2/health/ready").status_code == 200


def test_the_committed_artifact_classifies_texts(real_client: FlaskClient) -> None:
    response = real_client.post("/v1/sentiment", json={"texts": TEXTS})

    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert len(results) == len(TEXTS)
    for result in results:
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["label"] == max(result["scores"], key=result["scores"].get)


def test_a_result_does_not_depend_on_the_rest_of_the_batch(real_client: FlaskClient) -> None:
    # Padding must not leak into a text's result (the graph has to honour `lengths`).
    filler = ["word " * n for n in (40, 120, 300)]
    alone = [
        real_client.post("/v1/sentiment", json={"texts": [t]}).get_json()["results"][0]
        for t in TEXTS
    ]
    together = real_client.post("/v1/sentiment", json={"texts": filler + TEXTS}).get_json()

    for single, batched in zip(alone, together["results"][len(filler) :], strict=True):
        assert batched["scores"] == pytest.approx(single["scores"], abs=1e-5)


def test_texts_longer_than_max_tokens_are_truncated_not_rejected(
    real_client: FlaskClient, real_model_dir
) -> None:
    manifest = load_manifest(real_model_dir / "sentiment", verify=False)
    max_tokens = WordEncoderConfig(**manifest.preprocessing).max_tokens
    long_text = "good " * (max_tokens + 5)

    response = real_client.post("/v1/sentiment", json={"texts": [long_text, "good"]})

    assert response.status_code == 200
    assert [r["truncated"] for r in response.get_json()["results"]] == [True, False]
