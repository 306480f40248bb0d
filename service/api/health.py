"""Liveness and readiness probes (KServe V2 paths)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from spectree import SpecTree

from service.errors import NotReady
from service.openapi import documented
from service.runtime.registry import ModelRegistry
from service.schemas import LiveStatus, ReadyStatus


def health_blueprint(registry: ModelRegistry, spec: SpecTree) -> Blueprint:
    """``GET /v2/health/live`` (the process answers) and ``/v2/health/ready`` (models loaded)."""
    blueprint = Blueprint("health", __name__, url_prefix="/v2/health")

    @blueprint.get("/live")
    @documented(spec, ok=LiveStatus, tags=["health"], public=True)
    def live() -> dict[str, Any]:
        """Liveness: 200 while the worker process answers."""
        return live_body(registry)

    @blueprint.get("/ready")
    @documented(spec, ok=ReadyStatus, errors=(500, 503), tags=["health"], public=True)
    def ready() -> dict[str, Any]:
        """Readiness: 200 when every configured model loaded, else 503 saying why."""
        if not registry.ready:
            raise not_ready_error(registry)
        return ready_body(registry)

    return blueprint


def live_body(registry: ModelRegistry) -> dict[str, Any]:
    """The answer to a liveness probe (also served on HEALTH_PORT: service/health_server.py)."""
    return LiveStatus(models=sorted(registry.models)).model_dump()


def ready_body(registry: ModelRegistry) -> dict[str, Any]:
    """The answer to a readiness probe when every model is loaded."""
    return ReadyStatus(models=sorted(registry.models)).model_dump()


def not_ready_error(registry: ModelRegistry) -> NotReady:
    """A 503 that says which models failed and why (or why there are none)."""
    details = {"failed": dict(registry.errors), "loaded": sorted(registry.models)}
    if registry.problem is not None:
        return NotReady(f"not ready, no model to load: {registry.problem}", details=details)
    reasons = "; ".join(f"{name}: {reason}" for name, reason in sorted(registry.errors.items()))
    return NotReady(
        f"not ready, {len(registry.errors)} model(s) failed to load: {reasons}", details=details
    )
