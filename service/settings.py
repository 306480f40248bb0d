"""Service settings, read from environment variables and validated once at start-up.

Every setting has a safe default, so ``gunicorn "service:create_app()"`` works from the
repository root with no environment at all. A value that does not validate stops the worker at
boot with a message naming the variable (``Settings.from_environment``), instead of failing on
the first request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from service.runtime.manifest import Precision

ProviderChoice = Literal["auto", "cpu", "cuda"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "text"]

MODEL_DIR_NAME = "exported_models"
MIN_API_KEY_CHARS = 16
# The repository checkout this package lives in (only meaningful for a source checkout).
_REPO_MODEL_DIR = Path(__file__).resolve().parent.parent / MODEL_DIR_NAME


def default_model_dir() -> Path:
    """``./exported_models`` if the working directory has one, else the repository's folder."""
    here = Path.cwd() / MODEL_DIR_NAME
    return here if here.is_dir() else _REPO_MODEL_DIR


class BatchOverride(BaseModel):
    """Per-model batching values that replace the BATCH_* defaults (absent = the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_queue_delay_ms: float | None = Field(default=None, ge=0, le=1000)
    max_queue_size: int | None = Field(default=None, ge=1, le=100_000)
    min_fill: float | None = Field(default=None, ge=0, le=1)


class SettingsError(ValueError):
    """Environment variables that do not validate; the message names each one."""


# Settings whose values an error message must not repeat (they end up in logs).
_SECRET_SETTINGS = {"api_keys", "admin_api_keys"}


class Settings(BaseSettings):
    """Typed settings of one service process; each field is read from the upper-case env var."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, protected_namespaces=()
    )

    model_dir: Path = Field(
        default_factory=default_model_dir,
        description="Folder holding one sub-folder per exported model (relative paths are "
        "resolved against the working directory).",
    )
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated model folder names to load; empty loads every sub-folder "
        "of MODEL_DIR that has a manifest.json.",
    )
    ort_providers: ProviderChoice = Field(
        default="auto",
        description="ONNX Runtime execution providers: auto (CUDA when available, else CPU), "
        "cpu, or cuda (readiness fails when CUDA is unavailable).",
    )
    model_precision: Precision = Field(
        default="fp32",
        description="Graph precision to serve: fp32 (the exported graphs) or int8 (each "
        "model's verified int8 variant from `python -m training quantize`; a model without "
        "one serves fp32, with a warning).",
    )
    ort_intra_op_threads: int = Field(
        default=1, ge=1, le=256, description="ONNX Runtime threads inside one operator."
    )
    ort_inter_op_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="ONNX Runtime threads across operators; above 1, independent operators run "
        "in parallel (ONNX Runtime's parallel execution mode).",
    )
    max_texts_per_request: int = Field(
        default=256, ge=1, le=100_000, description="Most texts accepted in one request."
    )
    max_text_chars: int = Field(
        default=20_000, ge=1, description="Most characters accepted in one text."
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest request body, in bytes."
    )
    max_request_tokens: int = Field(
        default=200_000,
        ge=1,
        description="Most tokens one inference request may make a model process, counted "
        "before it runs (413 above): the words of its texts for NER, and for sentiment after "
        "each text is cut at the model's max_tokens; for translation, per text, source "
        "subwords plus most target subwords, times beam_size, plus source times most target "
        "subwords when attention is asked for. Counting stops at the first text that passes "
        "the limit.",
    )
    log_level: LogLevel = Field(default="INFO", description="Level of the service's own logs.")
    log_format: LogFormat = Field(
        default="json",
        description="Format of the service's own logs: json (one object per line, with the "
        "request id) or text.",
    )
    batching: bool = Field(
        default=True,
        description="Dynamic batching: rows of concurrent requests for the same model run "
        "together in one ONNX Runtime call, run by one of their threads at a time; false runs "
        "each request's rows on their own (for comparison).",
    )
    batch_max_size: int = Field(
        default=32,
        ge=1,
        le=4096,
        description="Most rows (texts; NER sentence pieces) in one ONNX Runtime call, with "
        "batching on or off.",
    )
    batch_max_queue_delay_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="How long the oldest waiting row may wait for requests that are already "
        "being parsed in the same worker to join its batch (a lone request never waits).",
    )
    batch_max_queue_size: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Most requests waiting for one model in one worker; more are answered 503 "
        "with Retry-After. Under gunicorn a worker handles at most GUNICORN_THREADS requests at "
        "once (the others wait in gunicorn's connection queue), so the limit only applies with "
        "more threads than it.",
    )
    batch_overrides: dict[str, BatchOverride] = Field(
        default_factory=dict,
        description='Per-model batching values as JSON, e.g. {"ner": {"max_batch_size": 16, '
        '"max_queue_delay_ms": 5, "max_queue_size": 32, "min_fill": 0.5}}; min_fill (0 to 1) is '
        "the least share of real tokens in a padded batch, longer or shorter rows going to the "
        "next batch (defaults: 0.8 for sentiment and NER, 0 for translation).",
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        repr=False,
        description="Comma-separated API keys (16+ characters each). When API_KEYS or "
        "ADMIN_API_KEYS is set, every endpoint but the health probes, /metrics and the API "
        "docs needs `Authorization: Bearer <key>` (401 otherwise).",
    )
    admin_api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        repr=False,
        description="Comma-separated keys that may also reload models "
        "(POST /v1/models/{name}/reload; without admin keys, nobody may); accepted wherever "
        "an API key is.",
    )
    metrics_public: bool = Field(
        default=True,
        description="With API_KEYS or ADMIN_API_KEYS set, /metrics answers without a key "
        "unless this is false; then a scrape needs `Authorization: Bearer <key>` as well "
        "(Prometheus' `authorization` scrape setting sends one).",
    )
    reload_signal_dir: Path | None = Field(
        default=None,
        description="Folder shared by the workers of one server: a model reloaded in one "
        "worker is then reloaded in every worker within about a second (gunicorn.conf.py sets "
        "one up when unset). Unset: a reload changes only the worker that answers it.",
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A request waiting longer than this for its model's batcher gets 504 "
        "(keep it below GUNICORN_TIMEOUT); counted from when its texts, read and encoded, are "
        "queued for the model.",
    )

    grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the Open Inference Protocol over gRPC "
        "(inference.GRPCInferenceService, as Triton's and KServe's gRPC clients speak it). "
        "Under gunicorn every worker serves it on this port (the kernel spreads connections "
        "over them); unset: no gRPC.",
    )
    grpc_threads: int = Field(
        default=4,
        ge=1,
        le=256,
        description="gRPC inference calls one worker runs at once (as GUNICORN_THREADS for "
        "HTTP); the other calls never wait for one of these turns. Calls to the same model are "
        "batched together, and with HTTP requests.",
    )
    grpc_max_concurrent_calls: int = Field(
        default=64,
        ge=1,
        le=4096,  # a thread each
        description="Most gRPC calls one worker holds, each in a thread of its own: running, "
        "waiting for their turn or for their messages; more are refused at once with "
        "RESOURCE_EXHAUSTED.",
    )
    health_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Also answer GET /v2/health/live and /v2/health/ready on this port, from "
        "threads of their own in every gunicorn worker: probes there do not wait for a request "
        "thread, so a busy server still answers them at once. Unset: the service's port only.",
    )

    @field_validator("grpc_port", "health_port", mode="before")
    @classmethod
    def _empty_port_is_unset(cls, value: object) -> object:
        # GRPC_PORT= (empty) turns gRPC off, e.g. in the Docker image, which sets it.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        if self.health_port is not None and self.health_port == self.grpc_port:
            raise ValueError(f"HEALTH_PORT and GRPC_PORT are both {self.health_port}: choose two")
        return self

    @field_validator("model_dir", mode="after")
    @classmethod
    def _absolute_model_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("models", "api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("api_keys", "admin_api_keys", mode="after")
    @classmethod
    def _long_enough_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < MIN_API_KEY_CHARS for key in value):
            raise ValueError(f"every key needs at least {MIN_API_KEY_CHARS} characters")
        return value

    @property
    def auth_enabled(self) -> bool:
        """True when requests need an API key."""
        return bool(self.api_keys or self.admin_api_keys)

    @field_validator("ort_providers", "model_precision", "log_format", mode="before")
    @classmethod
    def _lower_choice(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @classmethod
    def from_environment(cls) -> Settings:
        """The settings of this process's environment. A value that does not validate raises
        :class:`SettingsError` naming its variable, e.g. ``BATCHING='maybe': Input should be a
        valid boolean``; API keys are never repeated."""
        try:
            return cls()
        except SourceError as exc:  # a JSON setting (BATCH_OVERRIDES) that is not JSON
            field = re.search(r'field "(\w+)"', str(exc))
            name = field.group(1).upper() if field else "a setting"
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            raise SettingsError(f"invalid settings: {name} is not valid JSON{cause}") from None
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                if not error["loc"]:  # a check of several settings together: its message says
                    problems.append(error["msg"].removeprefix("Value error, "))
                    continue
                field, *inside = (str(part) for part in error["loc"])
                where = field.upper() + (f" ({'.'.join(inside)})" if inside else "")
                shown = "" if field in _SECRET_SETTINGS else f"={error['input']!r}"
                problems.append(f"{where}{shown}: {error['msg']}")
            raise SettingsError("invalid settings: " + "; ".join(problems)) from None
