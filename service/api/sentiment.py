"""``POST /v1/sentiment``: validate, predict, serialize."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from spectree import SpecTree

from service.api.body import parse_body
from service.api.models import model_for_task
from service.openapi import PREDICT_ERRORS, documented
from service.runtime.registry import ModelRegistry
from service.schemas import (
    ModelRef,
    SentimentRequest,
    SentimentResponse,
    SentimentResult,
    TextLimits,
)


def sentiment_blueprint(registry: ModelRegistry, limits: TextLimits, spec: SpecTree) -> Blueprint:
    """Classify the sentiment of up to ``limits.max_texts`` texts per request."""
    blueprint = Blueprint("sentiment", __name__, url_prefix="/v1")

    @blueprint.post("/sentiment")
    @documented(
        spec, body=SentimentRequest, ok=SentimentResponse, errors=PREDICT_ERRORS, tags=["v1"]
    )
    def classify() -> dict[str, Any]:
        """Classify the sentiment of texts.

        One result per text, in request order: the most likely label, its probability and the
        probability of every label.
        """
        body = parse_body(SentimentRequest, context={"limits": limits})
        model = model_for_task(registry, "sentiment")
        predictions = model.predictor.predict_batch(body.texts)
        response = SentimentResponse(
            model=ModelRef(name=model.name, version=model.manifest.version),
            results=[SentimentResult.model_validate(p) for p in predictions],
        )
        return response.model_dump(mode="json")

    return blueprint
