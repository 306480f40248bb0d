"""``POST /v1/sentiment``: validate, predict, serialize."""

from __future__ import annotations

from flask import Blueprint, Response
from spectree import SpecTree

from service.api.body import parse_body
from service.api.models import announced, model_for_task
from service.api.responses import json_response
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
    def classify() -> Response:
        """Classify the sentiment of texts.

        One result per text, in request order: the most likely label, its probability and the
        probability of every label.
        """
        with announced(registry, "sentiment"):
            body = parse_body(SentimentRequest, context={"limits": limits})
            model = model_for_task(registry, "sentiment")
            predictions = model.predictor.predict_batch(body.texts)
        response = SentimentResponse(
            model=ModelRef(name=model.name, version=model.manifest.version),
            results=[SentimentResult.model_validate(p) for p in predictions],
        )
        return json_response(response)

    return blueprint
