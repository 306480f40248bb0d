"""``GET /v1/models``: what this worker serves, and on which execution providers;
``POST /v1/models/{name}/reload``: load a model's folder again and swap it in; and the lookup
every prediction endpoint starts with (:func:`model_for_task`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from flask import Blueprint
from spectree import SpecTree

from service.auth import require_admin
from service.errors import NotFound, NotReady, ReloadFailed
from service.metrics import tag_model
from service.openapi import documented
from service.runtime.manifest import ArtifactError, load_manifest
from service.runtime.registry import LoadedModel, ModelRegistry, ReloadError
from service.runtime.reload_broadcast import ReloadBroadcast
from service.schemas import ModelInfo, ModelList, ReloadResponse
from service.settings import Settings

logger = logging.getLogger(__name__)


def models_blueprint(
    registry: ModelRegistry,
    settings: Settings,
    spec: SpecTree,
    broadcast: ReloadBroadcast | None = None,
) -> Blueprint:
    """List the loaded models with their manifest facts and dev metrics; reload one (in every
    worker when there is a ``broadcast``)."""
    blueprint = Blueprint("models", __name__, url_prefix="/v1")

    @blueprint.get("/models")
    @documented(spec, ok=ModelList, errors=(401, 500), tags=["v1"])
    def list_models() -> dict[str, Any]:
        """List the models this worker serves.

        Name, version, task, labels, the precision of the graphs loaded (MODEL_PRECISION),
        their dev-set metrics and the execution providers in use.
        """
        infos = [model_info(model) for _, model in sorted(registry.models.items())]
        return ModelList(models=infos).model_dump()

    @blueprint.post("/models/<name>/reload")
    @documented(spec, ok=ReloadResponse, errors=(401, 403, 404, 409, 500), tags=["admin"])
    def reload_model(name: str) -> dict[str, Any]:
        """Reload a model from its folder (needs an admin key: ADMIN_API_KEYS).

        The folder is verified (sha256 of every file), loaded and warmed up, then swapped in;
        requests already running finish on the old model. If the new files do not load, the
        old model keeps serving and the answer (409) says why. The answer is this worker's;
        the other workers of the server follow within about a second (RELOAD_SIGNAL_DIR).
        """
        require_admin(settings)
        if name in registry.models or name in registry.errors:
            tag_model(name)  # only configured names: a metric label per URL would grow unbounded
        try:
            new, previous = registry.reload(name)
        except KeyError:
            raise NotFound(
                f"no model {name!r} is configured; configured: "
                f"{sorted({*registry.models, *registry.errors})}"
            ) from None
        except ReloadError as exc:
            raise ReloadFailed(f"reloading {name!r} failed, {exc.outcome}: {exc}") from None
        warning = None
        if broadcast is not None:
            try:
                broadcast.announce(name)
            except OSError as exc:  # this worker's reload stands: say the others did not follow
                logger.exception("telling the other workers to reload %r failed", name)
                warning = f"reloaded in this worker only; telling the others failed: {exc}"
        return ReloadResponse(
            model=model_info(new), previous_version=previous, warning=warning
        ).model_dump()

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
        metrics=model.metrics,
        providers=model.providers,
        precision=model.precision,
    )


@contextmanager
def announced(registry: ModelRegistry, task: str) -> Iterator[None]:
    """Announce the request to the batcher of ``task``'s model (when one is loaded) for the
    ``with`` block, in which it parses, encodes and submits its rows: batches wait for it. The
    request's metrics are labelled with the model from here on, so a body that fails
    validation counts for the model, as it does over ``/v2``."""
    model = registry.for_task(task)
    if model is not None:
        tag_model(model.name)
    with model.predictor.scheduler.incoming() if model is not None else nullcontext():
        yield


def model_for_task(registry: ModelRegistry, task: str) -> LoadedModel:
    """The loaded model serving ``task``, or a 503 saying that none is (and why, in details)."""
    model = registry.for_task(task)
    if model is None and not _may_be_failed(registry, task):
        loaded = ", ".join(sorted(registry.models)) or "none"
        raise NotFound(
            f"no {task} model is served here; loaded: {loaded} (MODEL_DIR, MODELS)",
            details={"loaded": sorted(registry.models)},
        )
    if model is None:
        raise NotReady(
            f"no {task} model is loaded; GET /v2/health/ready says why",
            details={"failed": dict(registry.errors)},
        )
    tag_model(model.name)
    return model


def _may_be_failed(registry: ModelRegistry, task: str) -> bool:
    """Whether a model that failed to load may be one of ``task``: its manifest says so, or
    cannot be read to say otherwise."""
    if registry.problem is not None:  # no model folder at all: whichever the task
        return True
    if registry.settings is None:
        return bool(registry.errors)
    for name in registry.errors:
        try:
            manifest = load_manifest(registry.settings.model_dir / name, verify=False)
        except (ArtifactError, OSError):
            return True
        if manifest.task == task:
            return True
    return False
