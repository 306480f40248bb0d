"""The Flask app of one worker: settings, models, routes, errors (``service.create_app``)."""

from __future__ import annotations

from flask import Flask

from service import REGISTRY_KEY, SETTINGS_KEY
from service.api import register_blueprints
from service.auth import install_api_keys
from service.disconnects import install_disconnect_checks
from service.errors import register_error_handlers
from service.log import configure_logging, install_request_ids
from service.metrics import MetricsObserver, install_request_metrics
from service.runtime.registry import ModelRegistry
from service.runtime.reload_broadcast import ReloadBroadcast
from service.settings import Settings


def build_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: settings (from the environment by default), models, routes, errors."""
    settings = settings or Settings.from_environment()
    configure_logging(settings.log_level, settings.log_format)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the schemas' field order
    # /v1//sentiment is no route (404), not a redirect to /v1/sentiment, nor, with an empty
    # version, a 405 for /v2/models/<name>/versions//infer; before any route is added.
    app.url_map.merge_slashes = False
    broadcast = None
    if settings.reload_signal_dir is not None:  # before loading: see ReloadBroadcast
        broadcast = ReloadBroadcast(settings.reload_signal_dir)
    registry = ModelRegistry.from_settings(settings, observer=MetricsObserver())
    if broadcast is not None:
        broadcast.follow(registry)
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[REGISTRY_KEY] = registry
    install_request_ids(app)
    install_request_metrics(app)
    install_api_keys(app, settings)
    install_disconnect_checks(app)
    register_error_handlers(app)
    register_blueprints(app, settings, registry, broadcast)
    return app
