"""Liveness and readiness probes (KServe V2 paths)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from service.errors import NotReady
from service.runtime.registry import ModelRegistry
from service.schemas import HealthStatus


def health_blueprint(registry: ModelRegistry) -> Blueprint:
    """``GET /v2/health/live`` (the process answers) and ``/v2/health/ready`` (models loaded)."""
    blueprint = Blueprint("health", __name__, url_prefix="/v2/health")

    @blueprint.get("/live")
    def live() -> dict[str, Any]:
        return HealthStatus(status="live", models=sorted(registry.models)).model_dump()

    @blueprint.get("/ready")
    def ready() -> dict[str, Any]:
        if not registry.ready:
            raise not_ready_error(registry)
        return HealthStatus(status="ready", models=sorted(registry.models)).model_dump()

    return blueprint


def not_ready_error(registry: ModelRegistry) -> NotReady:
    """A 503 that says which models failed and why."""
    reasons = "; ".join(f"{name}: {reason}" for name, reason in sorted(registry.errors.items()))
    return NotReady(
        f"not ready, {len(registry.errors)} model(s) failed to load: {reasons}",
        details={"failed": dict(registry.errors), "loaded": sorted(registry.models)},
    )
