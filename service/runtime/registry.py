"""The models one worker serves: verified, loaded, warmed up, or recorded as failed.

``create_app`` builds one registry per gunicorn worker (sessions are never shared across a
fork). A model that fails to load does not stop the worker: its error is kept, and readiness
reports it, so an orchestrator sees *why* the pod is not ready.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from service.predictors import PREDICTOR_FACTORIES, Predictor
from service.runtime.batcher import BatchObserver, BatchPolicy, make_scheduler
from service.runtime.manifest import (
    ArtifactError,
    Manifest,
    Precision,
    discover_models,
    load_manifest,
)
from service.runtime.session import OnnxSession, ProviderError, SessionConfig, resolve_providers
from service.settings import BatchOverride, Settings
from service.text.constants import MANIFEST_FILE

logger = logging.getLogger(__name__)


class ModelObserver(BatchObserver, Protocol):
    """Told about every graph call, and about which model versions the worker serves (metrics)."""

    def on_serving(self, model: LoadedModel, serving: bool) -> None:
        """``model`` now serves in this worker, or (``serving`` false) no longer does."""
        ...

    def on_reload(self, name: str, succeeded: bool) -> None:
        """A reload of ``name`` in this worker (asked for, or followed) ended."""
        ...


class ReloadError(Exception):
    """A model folder that could not be loaded again; ``outcome`` says what serves meanwhile."""

    def __init__(self, message: str, still_serving: bool):
        super().__init__(message)
        self.outcome = "the loaded model keeps serving" if still_serving else "it stays unloaded"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready to serve: its manifest, its predictor, the providers it runs on and the
    precision of the graph files it loaded (``MODEL_PRECISION``, or fp32 as a fallback)."""

    name: str
    folder: Path
    manifest: Manifest
    predictor: Predictor
    providers: list[str]
    precision: Precision = "fp32"

    @property
    def metrics(self) -> dict[str, float]:
        """Dev metrics of the graphs actually loaded (the variant's own when not fp32)."""
        if self.precision == "fp32":
            return self.manifest.metrics
        return self.manifest.variants[self.precision].metrics


@dataclass(slots=True)
class ModelRegistry:
    """Loaded models by name, the reason each model that did not load failed, and the reason
    there are no models to load at all (``problem``: MODEL_DIR holds no model folder)."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    settings: Settings | None = None
    observer: ModelObserver | None = None
    _reload_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, observer: ModelObserver | None = None
    ) -> ModelRegistry:
        """Load every model that the settings name (or every model found in ``MODEL_DIR``).

        ``observer`` is told about every graph call and model change (metrics).
        """
        registry = cls(settings=settings, observer=observer)
        names = settings.models or discover_models(settings.model_dir)
        if not names:
            reason = f"no folder with a {MANIFEST_FILE} in {settings.model_dir}"
            if (settings.model_dir / MANIFEST_FILE).is_file():  # one model's own folder
                reason += (
                    f", which is itself a model folder: MODEL_DIR is the folder that holds the "
                    f"model folders, here {settings.model_dir.parent}"
                )
            registry.problem = f"MODEL_DIR: {reason}"
            return registry
        try:
            config = session_config(settings)
        except ProviderError as exc:
            registry.errors.update({name: str(exc) for name in names})
            return registry
        for name in names:
            registry.load(name, settings.model_dir / name, config)
        registry._warn_of_shared_tasks()
        unknown = sorted(set(settings.batch_overrides) - set(names))
        if unknown:  # a misspelt name would otherwise change nothing without a word
            logger.warning(
                "BATCH_OVERRIDES names %s, which %s not among the models served here: %s",
                ", ".join(unknown),
                "is" if len(unknown) == 1 else "are",
                ", ".join(names),
            )
        return registry

    def load(self, name: str, folder: Path, config: SessionConfig) -> None:
        """Load one model folder; on failure, record the reason instead of raising."""
        try:
            self.models[name] = self._load_scheduled(name, folder, config)
            self.errors.pop(name, None)
        except Exception as exc:  # any failure must surface in readiness, not kill the worker
            logger.exception("model %r in %s failed to load", name, folder)
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            return
        loaded = self.models[name]
        self._tell(lambda observer: observer.on_serving(loaded, True))

    def reload(self, name: str) -> tuple[LoadedModel, str | None]:
        """Load ``name``'s folder again (verified and warmed up) and swap it in atomically.

        Returns the new model and the old one's version (None if it had not loaded). Requests
        that already hold the old model finish on it (its batcher runs what is queued, then
        anything later inline); once none does, it is freed, and its memory given back to the
        system (:func:`give_memory_back`, shortly after). Raises :class:`ReloadError`
        when the folder cannot be loaded (an old model then keeps serving), ``KeyError`` for
        a model that is not configured. Only this worker's registry changes
        (:mod:`service.runtime.reload_broadcast` tells the others).
        """
        if self.settings is None or (name not in self.models and name not in self.errors):
            raise KeyError(name)
        with self._reload_lock:
            old = self.models.get(name)
            try:
                config = session_config(self.settings)
                new = self._load_scheduled(name, self.settings.model_dir / name, config)
            except Exception as exc:
                error = ReloadError(f"{type(exc).__name__}: {exc}", still_serving=old is not None)
                logger.exception("reloading model %r failed; %s", name, error.outcome)
                self._reloaded(name, None, None)
                raise error from exc
            if old is not None and new.manifest.task != old.manifest.task:
                new.predictor.scheduler.close()
                self._reloaded(name, None, None)
                raise ReloadError(
                    f"the folder now holds a {new.manifest.task} model, not {old.manifest.task}",
                    still_serving=True,
                )
            self.models[name] = new  # one reference swap: a request sees old or new, whole
            self.errors.pop(name, None)
            self._reloaded(name, old, new)
        previous = None
        if old is not None:
            old.predictor.scheduler.close()
            previous = old.manifest.version
            weakref.finalize(old.predictor, _give_memory_back_soon)
            del old  # freed here, unless a request still runs on it
        logger.info("model %r reloaded: %s -> %s", name, previous, new.manifest.version)
        return new, previous

    def _reloaded(self, name: str, old: LoadedModel | None, new: LoadedModel | None) -> None:
        """Tell the observer how a reload ended (``new`` None: it failed)."""

        def tell(observer: ModelObserver) -> None:
            if new is not None:
                if old is not None:
                    observer.on_serving(old, False)
                observer.on_serving(new, True)
            observer.on_reload(name, new is not None)

        self._tell(tell)

    def _tell(self, event: Callable[[ModelObserver], None]) -> None:
        """Tell the observer of ``event``; its failure (say, a full metrics folder) is logged,
        and fails no load or reload."""
        if self.observer is None:
            return
        try:
            event(self.observer)
        except Exception:
            logger.exception("recording a model change failed")

    def _load_scheduled(self, name: str, folder: Path, config: SessionConfig) -> LoadedModel:
        """:func:`load_model` at the configured precision, then give the predictor its
        batcher and its token budget."""
        precision = self.settings.model_precision if self.settings else "fp32"
        model = load_model(name, folder, config, precision)
        min_fill = model.predictor.min_batch_fill
        policy = (
            batch_policy(self.settings, name, min_fill)
            if self.settings
            else BatchPolicy(min_fill=min_fill)
        )
        model.predictor.scheduler = make_scheduler(
            name, _run_rows_of(model.predictor), policy, self.observer
        )
        if self.settings:
            model.predictor.max_request_tokens = self.settings.max_request_tokens
        return model

    @property
    def ready(self) -> bool:
        """True when at least one model is configured and every configured model loaded."""
        return bool(self.models) and not self.errors and self.problem is None

    def for_task(self, task: str) -> LoadedModel | None:
        """The model serving ``task`` (the first by name when there are several)."""
        return next((m for _, m in sorted(self.models.items()) if m.manifest.task == task), None)

    def _warn_of_shared_tasks(self) -> None:
        """Say which model a task's /v1 endpoint serves when several models have that task (a
        folder added next to another changes it without a word otherwise)."""
        for task in sorted({m.manifest.task for m in self.models.values()}):
            names = sorted(n for n, m in self.models.items() if m.manifest.task == task)
            if len(names) > 1:
                logger.warning(
                    "models %s are all %s models: /v1/%s serves %r, the first by name; every "
                    "one of them is served at /v2/models/<name>/infer (MODELS selects folders)",
                    ", ".join(names),
                    task,
                    "translate" if task == "translation" else task,
                    names[0],
                )


def session_config(settings: Settings) -> SessionConfig:
    """Providers and thread counts for every session of this worker."""
    return SessionConfig(
        providers=resolve_providers(settings.ort_providers),
        intra_op_threads=settings.ort_intra_op_threads,
        inter_op_threads=settings.ort_inter_op_threads,
        strict=settings.ort_providers != "auto",
    )


def batch_policy(settings: Settings, name: str, min_fill: float = 0.0) -> BatchPolicy:
    """The BATCH_* settings and the model's ``min_fill``, with ``name``'s entry of
    BATCH_OVERRIDES applied."""
    override = settings.batch_overrides.get(name) or BatchOverride()
    values = {
        "max_batch_size": settings.batch_max_size,
        "max_queue_delay_ms": settings.batch_max_queue_delay_ms,
        "max_queue_size": settings.batch_max_queue_size,
        "min_fill": min_fill,
    }
    values |= override.model_dump(exclude_none=True)
    return BatchPolicy(
        enabled=settings.batching,
        max_batch_size=values["max_batch_size"],
        max_queue_delay_s=values["max_queue_delay_ms"] / 1000,
        max_queue_size=values["max_queue_size"],
        timeout_s=settings.request_timeout_s,
        min_fill=values["min_fill"],
    )


def give_memory_back() -> None:
    """Hand the heap pages that are free back to the system (glibc's ``malloc_trim``).

    A model's buffers are allocated by whichever threads loaded and ran it, across glibc's
    per-thread arenas; freed, they mostly stay in those arenas, so without this a worker that
    reloaded a model stays about as large as if it still held the old one too. Nothing happens
    where the C library has no ``malloc_trim`` (musl, macOS)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


_LIBC = ctypes.CDLL(None)  # the symbols this process has loaded: the C library's among them

TRIM_DELAY_S = 0.2


def _give_memory_back_soon() -> None:
    """:func:`give_memory_back` in ``TRIM_DELAY_S``, in a thread of its own: a replaced
    predictor's finalizer calls this as the predictor's deallocation begins, in whichever thread
    dropped the last reference (the reload's, or that of the last request that used it), before
    its sessions are freed."""
    timer = threading.Timer(TRIM_DELAY_S, give_memory_back)
    timer.daemon = True
    timer.start()


def _run_rows_of(predictor: Predictor) -> Callable[[Sequence], object]:
    """``predictor.run_rows`` without a reference to ``predictor``, for its own scheduler.

    A predictor holds its scheduler; a scheduler holding the predictor back would make a
    reference cycle, which only Python's cyclic garbage collector frees, at a time of its
    choosing. A model replaced by a reload (its ONNX Runtime sessions: tens of MB, and their
    threads) would then stay in memory: under gunicorn, each reload grew a worker by about
    the model's size. Without the cycle, it goes as soon as the last request using it ends.
    The predictor is alive whenever its scheduler runs: the scheduler is only reached through it.
    """
    method = weakref.WeakMethod(predictor.run_rows)

    def run_rows(rows: Sequence) -> object:
        return method()(rows)

    return run_rows


def load_model(
    name: str, folder: Path, config: SessionConfig, precision: Precision = "fp32"
) -> LoadedModel:
    """Verify the artifact's checksums, open its graphs at ``precision`` (when the artifact
    has that variant), build and warm up its predictor."""
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: model folder does not exist")
    manifest = load_manifest(folder, verify=True)
    factory = PREDICTOR_FACTORIES.get(manifest.task)
    if factory is None:
        raise ArtifactError(f"{folder}: no predictor for task {manifest.task!r} in this service")
    precision = available_precision(name, manifest, precision)
    sessions = open_sessions(folder, manifest, config, precision)
    predictor = factory(folder, manifest, sessions)
    predictor.warm_up()
    if load_manifest(folder, verify=False) != manifest:  # the files may mix two exports
        raise ArtifactError(f"{folder}: the folder changed while it loaded (a new export?)")
    providers = _providers_in_use(sessions.values())
    logger.info("model %r %s (%s) ready on %s", name, manifest.version, precision, providers)
    return LoadedModel(name, folder, manifest, predictor, providers, precision)


def available_precision(name: str, manifest: Manifest, wanted: Precision) -> Precision:
    """``wanted`` if the artifact has it, else fp32 with a warning.

    A missing variant is not an error: MODEL_PRECISION applies to every model, and only the
    models whose int8 graphs passed verification have one, so the others keep serving fp32.
    """
    if wanted == "fp32":
        return wanted
    variant = manifest.variants.get(wanted)
    if variant is None:
        logger.warning(
            "model %r has no %s variant in its manifest (python -m training quantize makes "
            "one); serving its fp32 graphs",
            name,
            wanted,
        )
        return "fp32"
    if not variant.qualified:
        logger.warning(
            "model %r: its %s variant was recorded with --force although it missed the "
            "criteria (speed-up %s, dev metrics %s); serving it as configured",
            name,
            wanted,
            variant.speedup,
            variant.metrics,
        )
    return wanted


def open_sessions(
    folder: Path, manifest: Manifest, config: SessionConfig, precision: Precision = "fp32"
) -> dict[str, OnnxSession]:
    """One session per graph named in the manifest, from the files of ``precision``.

    A variant's graphs take and return the tensors that ``manifest.graphs`` declares, so the
    same specs check them.
    """
    return {
        graph: OnnxSession(manifest.path_of(folder, graph, precision), spec, config)
        for graph, spec in manifest.graphs.items()
    }


def _providers_in_use(sessions: Iterable[OnnxSession]) -> list[str]:
    providers: list[str] = []
    for session in sessions:
        providers += [p for p in session.providers if p not in providers]
    return providers
