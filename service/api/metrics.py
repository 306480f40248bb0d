"""``GET /metrics``: Prometheus text format, summed over every gunicorn worker."""

from __future__ import annotations

from flask import Blueprint, Response

from service.metrics import render_metrics


def metrics_blueprint() -> Blueprint:
    """The scrape endpoint (see :mod:`service.metrics` for what is measured)."""
    blueprint = Blueprint("metrics", __name__)

    @blueprint.get("/metrics")
    def metrics() -> Response:
        return render_metrics()

    return blueprint
