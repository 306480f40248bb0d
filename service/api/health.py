"""Liveness and readiness probes (KServe V2 paths)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from spectree import SpecTree

from service.auth import trusted
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
        """Readiness: 200 when every configured model loaded, else 503 saying which models failed
        and, unless API keys are set and the request has none, why."""
        if not registry.ready:
            raise not_ready_error(registry, reasons=trusted())
        return ready_body(registry)

    return blueprint


def live_body(registry: ModelRegistry) -> dict[str, Any]:
    """The answer to a liveness probe (also served on HEALTH_PORT: service/health_server.py)."""
    return LiveStatus(models=sorted(registry.models)).model_dump()


def ready_body(registry: ModelRegistry) -> dict[str, Any]:
    """The answer to a readiness probe when every model is loaded."""
    return ReadyStatus(models=sorted(registry.models)).model_dump()


# What an untrusted client reads instead of a load failure's reason, which may name the
# server's files and their checksums.
HIDDEN_REASON = "the reason is in the server's log, and in this answer to a request with an API key"


def not_ready_error(registry: ModelRegistry, reasons: bool = True) -> NotReady:
    """A 503 that says which models failed and, with ``reasons``, why (or why there are none)."""
    errors = dict(sorted(registry.errors.items()))
    if not reasons:
        errors = dict.fromkeys(errors, HIDDEN_REASON)
    details = {"failed": errors, "loaded": sorted(registry.models)}
    if registry.problem is not None:
        problem = registry.problem if reasons else HIDDEN_REASON
        return NotReady(f"not ready, no model to load: {problem}", details=details)
    if reasons:
        why = "; ".join(f"{name}: {reason}" for name, reason in errors.items())
    else:
        why = f"{', '.join(errors)} ({HIDDEN_REASON})"
    return NotReady(f"not ready, {len(errors)} model(s) failed to load: {why}", details=details)
