"""``GET /v1/models``: what this worker serves, and on which execution providers; and the
lookup every prediction endpoint starts with (:func:`model_for_task`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from service.errors import NotReady
from service.runtime.registry import LoadedModel, ModelRegistry
from service.schemas import ModelInfo, ModelList


def models_blueprint(registry: ModelRegistry) -> Blueprint:
    """List the loaded models with their manifest facts and dev metrics."""
    blueprint = Blueprint("models", __name__, url_prefix="/v1")

    @blueprint.get("/models")
    def list_models() -> dict[str, Any]:
        infos = [model_info(model) for _, model in sorted(registry.models.items())]
        return ModelList(models=infos).model_dump()

    return blueprint


def model_info(model: LoadedModel) -> ModelInfo:
    """The public description of one loaded model."""
    manifest = model.manifest
    return ModelInfo(
        name=model.name,
        version=manifest.version,
        task=manifest.task,
        created_at=manifest.created_at,
        labels=manifest.labels,
        metrics=manifest.metrics,
        providers=model.providers,
    )


def model_for_task(registry: ModelRegistry, task: str) -> LoadedModel:
    """The loaded model serving ``task``, or a 503 saying that none is (and why, in details)."""
    model = registry.for_task(task)
    if model is None:
        raise NotReady(
            f"no {task} model is loaded; GET /v2/health/ready says why",
            details={"failed": dict(registry.errors)},
        )
    return model
