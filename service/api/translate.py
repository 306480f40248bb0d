"""``POST /v1/translate``: validate, translate (all texts of a request decoded together, in
batches), serialize."""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Response
from spectree import SpecTree

from service.api.body import parse_body
from service.api.models import announced, model_for_task
from service.api.responses import json_response
from service.errors import ValidationFailed
from service.openapi import PREDICT_ERRORS, documented
from service.predictors.translator import Translator, Untranslatable
from service.runtime.registry import ModelRegistry
from service.schemas import (
    ModelRef,
    TextLimits,
    TranslationRequest,
    TranslationResponse,
    TranslationResult,
)


def translate_blueprint(registry: ModelRegistry, limits: TextLimits, spec: SpecTree) -> Blueprint:
    """Translate up to ``limits.max_texts`` texts per request."""
    blueprint = Blueprint("translate", __name__, url_prefix="/v1")

    @blueprint.post("/translate")
    @documented(
        spec, body=TranslationRequest, ok=TranslationResponse, errors=PREDICT_ERRORS, tags=["v1"]
    )
    def translate() -> Response:
        """Translate texts with the loaded translation model.

        One result per text, in request order: the translation, its average log-probability,
        whether the source was truncated and, when asked, the attention weights. The texts of
        a request are decoded together (beam search, or greedy with `beam_size` 1).
        """
        with announced(registry, "translation"):
            body = parse_body(TranslationRequest, context={"limits": limits})
            model = model_for_task(registry, "translation")
            # The registry builds every "translation" model with Translator (PREDICTOR_FACTORIES).
            translator = cast(Translator, model.predictor)
            try:
                predictions = translator.predict_batch(
                    body.texts,
                    beam_size=body.beam_size,
                    max_length=body.max_length,
                    return_attention=body.return_attention,
                )
            except Untranslatable as exc:
                raise _as_validation_error(exc) from None
        response = TranslationResponse(
            model=ModelRef(name=model.name, version=model.manifest.version),
            results=[TranslationResult.model_validate(p) for p in predictions],
        )
        return json_response(response, exclude_none=True)

    return blueprint


def _as_validation_error(exc: Untranslatable) -> ValidationFailed:
    """A 422 naming every text that has nothing to translate (``texts[i]``)."""
    problems = [
        {"field": f"texts[{i}]", "message": why, "type": "nothing_to_translate"}
        for i, why in exc.problems
    ]
    message = f"{problems[0]['field']}: {problems[0]['message']}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem(s), see details)"
    return ValidationFailed(message, details=problems)
