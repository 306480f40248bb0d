"""REST inference service for recurrent NLP models exported to ONNX.

Run it with ``gunicorn -c gunicorn.conf.py "service:create_app()"``: gunicorn calls the
factory once in every worker, so each worker validates the settings and opens its own ONNX
Runtime sessions (nothing is created at import time and nothing is shared across a fork).

Importing the package loads nothing else: gunicorn's master process imports
``service.gunicorn_log`` (gunicorn.conf.py), and ONNX Runtime, Flask's app and the models
must first be loaded in the workers, after the fork.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Unless this is set when it is imported, ONNX Runtime keeps telemetry: a device id and an event
# database under ~/.cache/Microsoft (and, where the home folder is read-only, a warning in the
# log). Nothing in this project wants either. Set here, before any module of the service
# imports ONNX Runtime; the training and benchmark packages import this package first for the
# same reason. ORT_DISABLE_TELEMETRY=0 allows it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from flask import Flask

    from service.settings import Settings

SETTINGS_KEY = "service.settings"
REGISTRY_KEY = "service.registry"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: settings (from the environment by default), models, routes, errors."""
    from service.app import build_app

    return build_app(settings)


def __getattr__(name: str) -> Any:
    if name == "Settings":  # service.Settings, without importing it with the package
        from service.settings import Settings

        return Settings
    raise AttributeError(f"module 'service' has no attribute {name!r}")


__all__ = ["REGISTRY_KEY", "SETTINGS_KEY", "Settings", "create_app"]
