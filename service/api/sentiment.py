"""``POST /v1/sentiment``: validate, predict, serialize."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from service.api.body import parse_body
from service.api.models import model_for_task
from service.runtime.registry import ModelRegistry
from service.schemas import (
    ModelRef,
    SentimentRequest,
    SentimentResponse,
    SentimentResult,
    TextLimits,
)


def sentiment_blueprint(registry: ModelRegistry, limits: TextLimits) -> Blueprint:
    """Classify the sentiment of up to ``limits.max_texts`` texts per request."""
    blueprint = Blueprint("sentiment", __name__, url_prefix="/v1")

    @blueprint.post("/sentiment")
    def classify() -> dict[str, Any]:
        body = parse_body(SentimentRequest, context={"limits": limits})
        model = model_for_task(registry, "sentiment")
        predictions = model.predictor.predict_batch(body.texts)
        response = SentimentResponse(
            model=ModelRef(name=model.name, version=model.manifest.version),
            results=[SentimentResult.model_validate(p) for p in predictions],
        )
        return response.model_dump(mode="json")

    return blueprint
