"""Request and response bodies of the HTTP API (the OpenAPI document will be built from them).

Size limits depend on the settings, so they are passed at validation time::

    SentimentRequest.model_validate(body, context={"limits": TextLimits(256, 20_000)})

Without a context the default limits apply. Errors point at the offending item (``texts[3]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError


@dataclass(frozen=True, slots=True)
class TextLimits:
    """How many texts a request may hold and how long each may be."""

    max_texts: int = 256
    max_text_chars: int = 20_000


def _limits(info: ValidationInfo) -> TextLimits:
    return (info.context or {}).get("limits", TextLimits())


def _check_text(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise PydanticCustomError("empty_text", "text is empty after stripping whitespace")
    limit = _limits(info).max_text_chars
    if len(value) > limit:
        raise PydanticCustomError(
            "text_too_long",
            "text has {length} characters, at most {limit} are allowed",
            {"length": len(value), "limit": limit},
        )
    return value


InputText = Annotated[StrictStr, AfterValidator(_check_text)]


class SentimentRequest(BaseModel):
    """Texts to classify, answered in the same order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["A wonderful film.", "Dull and too long."]}]},
    )

    texts: list[InputText] = Field(
        description="Between 1 and MAX_TEXTS_PER_REQUEST (default 256) texts, each non-blank "
        "and at most MAX_TEXT_CHARS (default 20000) characters. Texts longer than the model's "
        "max_tokens are truncated and flagged, not rejected.",
    )

    @field_validator("texts", mode="before")
    @classmethod
    def _check_count(cls, value: Any, info: ValidationInfo) -> Any:
        # Checked before the items, so 10,000 texts give one error rather than 10,000.
        if not isinstance(value, list):
            return value
        if not value:
            raise PydanticCustomError("too_few_texts", "at least 1 text is required, got none")
        limit = _limits(info).max_texts
        if len(value) > limit:
            raise PydanticCustomError(
                "too_many_texts",
                "at most {limit} texts per request, got {count}",
                {"limit": limit, "count": len(value)},
            )
        return value


class ModelRef(BaseModel):
    """Which model answered."""

    name: str = Field(description="Model folder name, e.g. 'sentiment'.")
    version: str = Field(description="Version recorded in the model's manifest.")


class SentimentResult(BaseModel):
    """The classification of one text."""

    model_config = ConfigDict(from_attributes=True)

    label: str = Field(description="The most probable label.", examples=["positive"])
    score: float = Field(ge=0.0, le=1.0, description="Probability of `label`.")
    scores: dict[str, float] = Field(
        description="Probability of every label, e.g. {'negative': 0.1, 'positive': 0.9}; "
        "they sum to 1.",
    )
    truncated: bool = Field(
        description="True when the text had more tokens than the model reads (max_tokens) and "
        "only its beginning was classified.",
    )


class SentimentResponse(BaseModel):
    """Results of ``POST /v1/sentiment``, one per input text, in request order."""

    model: ModelRef
    results: list[SentimentResult]


class ModelInfo(BaseModel):
    """A loaded model, as listed by ``GET /v1/models``."""

    name: str = Field(description="Model folder name.")
    version: str = Field(description="Version recorded in the manifest.")
    task: str = Field(description="What the model does: sentiment, ner or translation.")
    created_at: str = Field(description="When the model was exported.")
    labels: list[str] = Field(description="Output labels, in the model's order.")
    metrics: dict[str, float] = Field(description="Dev-set metrics measured at export.")
    providers: list[str] = Field(
        description="ONNX Runtime execution providers the model's session actually uses."
    )


class ModelList(BaseModel):
    """Body of ``GET /v1/models``."""

    models: list[ModelInfo]


class HealthStatus(BaseModel):
    """Body of a successful health probe."""

    status: Literal["live", "ready"]
    models: list[str] = Field(default_factory=list, description="Models loaded in this worker.")


class ErrorBody(BaseModel):
    """What went wrong, for a person and for a program."""

    code: str = Field(description="Stable machine-readable code, e.g. 'validation_failed'.")
    message: str = Field(description="What went wrong and how to fix the request.")
    details: Any = Field(
        default=None, description="Structured extras, e.g. one entry per invalid field."
    )


class ErrorResponse(BaseModel):
    """Body of every non-2xx response."""

    error: ErrorBody
