"""REST inference service for recurrent NLP models exported to ONNX.

Run it with ``gunicorn -c gunicorn.conf.py "service:create_app()"``: gunicorn calls the
factory once in every worker, so each worker validates the settings and opens its own ONNX
Runtime sessions (nothing is created at import time and nothing is shared across a fork).
"""

from __future__ import annotations

import logging

from flask import Flask

from service.api import register_blueprints
from service.errors import register_error_handlers
from service.runtime.registry import ModelRegistry
from service.settings import Settings

SETTINGS_KEY = "service.settings"
REGISTRY_KEY = "service.registry"

_LOG_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: settings (from the environment by default), models, routes, errors."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the schemas' field order
    registry = ModelRegistry.from_settings(settings)
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[REGISTRY_KEY] = registry
    register_error_handlers(app)
    register_blueprints(app, settings, registry)
    return app


def configure_logging(level: str) -> None:
    """Send the ``service`` loggers to stderr (gunicorn's error log) at ``level``, once."""
    logger = logging.getLogger("service")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        logger.addHandler(handler)


__all__ = ["Settings", "create_app"]
