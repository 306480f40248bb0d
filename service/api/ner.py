"""``POST /v1/ner``: validate, tag (raw texts or pre-tokenized sentences), serialize."""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Response
from spectree import SpecTree

from service.api.body import parse_body
from service.api.models import announced, model_for_task
from service.api.responses import json_response
from service.openapi import PREDICT_ERRORS, documented
from service.predictors.ner import NerPrediction, NerPredictor
from service.runtime.registry import ModelRegistry
from service.schemas import ModelRef, NerRequest, NerResponse, NerResult, TextLimits


def ner_blueprint(registry: ModelRegistry, limits: TextLimits, spec: SpecTree) -> Blueprint:
    """Tag the named entities of up to ``limits.max_texts`` texts or sentences per request."""
    blueprint = Blueprint("ner", __name__, url_prefix="/v1")

    @blueprint.post("/ner")
    @documented(spec, body=NerRequest, ok=NerResponse, errors=PREDICT_ERRORS, tags=["v1"])
    def tag() -> Response:
        """Find the named entities (the model's types: PER, ORG, LOC, MISC for CoNLL-2003) in
        texts or pre-tokenized sentences.

        One result per input, in request order: the entities, each with its probability, and
        every token with its tag, that tag's probability and exact character offsets.
        """
        with announced(registry, "ner"):
            body = parse_body(NerRequest, context={"limits": limits})
            model = model_for_task(registry, "ner")
            # The registry builds every "ner" model with NerPredictor (PREDICTOR_FACTORIES).
            predictions = predict(cast(NerPredictor, model.predictor), body)
        response = NerResponse(
            model=ModelRef(name=model.name, version=model.manifest.version),
            results=[NerResult.model_validate(p) for p in predictions],
        )
        return json_response(response)

    return blueprint


def predict(predictor: NerPredictor, body: NerRequest) -> list[NerPrediction]:
    """Tag whichever input the request holds (the schema guarantees exactly one)."""
    if body.tokens:
        return predictor.predict_tokens(body.tokens)
    return predictor.predict_texts(body.texts)
