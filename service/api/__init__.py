"""HTTP API: one blueprint per concern, each built around the worker's model registry."""

from __future__ import annotations

from flask import Flask

from service.api.health import health_blueprint
from service.api.metrics import metrics_blueprint
from service.api.models import models_blueprint
from service.api.ner import ner_blueprint
from service.api.sentiment import sentiment_blueprint
from service.api.translate import translate_blueprint
from service.api.v2 import v2_blueprint
from service.openapi import create_spec, install_openapi
from service.runtime.registry import ModelRegistry
from service.runtime.reload_broadcast import ReloadBroadcast
from service.schemas import TextLimits
from service.settings import Settings


def register_blueprints(
    app: Flask,
    settings: Settings,
    registry: ModelRegistry,
    broadcast: ReloadBroadcast | None = None,
) -> None:
    """Mount every endpoint of the service on ``app``, and the OpenAPI document of them;
    ``broadcast`` passes reloads on to the other workers."""
    limits = TextLimits(settings.max_texts_per_request, settings.max_text_chars)
    spec = create_spec()
    app.register_blueprint(health_blueprint(registry, spec))
    app.register_blueprint(metrics_blueprint())
    app.register_blueprint(models_blueprint(registry, settings, spec, broadcast))
    app.register_blueprint(sentiment_blueprint(registry, limits, spec))
    app.register_blueprint(ner_blueprint(registry, limits, spec))
    app.register_blueprint(translate_blueprint(registry, limits, spec))
    app.register_blueprint(v2_blueprint(registry, limits))
    install_openapi(app, spec, limits)
