"""Request and response bodies of the HTTP API (the OpenAPI document is built from them).

Size limits depend on the settings, so they are passed at validation time::

    SentimentRequest.model_validate(body, context={"limits": TextLimits(256, 20_000)})

Without a context the default limits apply. Errors point at the offending item (``texts[3]``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.runtime.manifest import Precision
from service.text.charclass import char_class
from service.text.subword import NOTHING_TO_TRANSLATE, is_blank_char


@dataclass(frozen=True, slots=True)
class TextLimits:
    """How many texts a request may hold and how long each may be."""

    max_texts: int = 256
    max_text_chars: int = 20_000


def _limits(info: ValidationInfo) -> TextLimits:
    return (info.context or {}).get("limits", TextLimits())


# JSON's "\ud800" escapes decode to lone surrogates, which are not Unicode: no model reads them and
# no response echoing them could be encoded as UTF-8.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
UNPAIRED_SURROGATE = "{what} contains an unpaired UTF-16 surrogate (not valid Unicode)"


def _check_unicode(value: str, what: str) -> None:
    if _LONE_SURROGATE.search(value):
        raise PydanticCustomError("invalid_unicode", UNPAIRED_SURROGATE, {"what": what})


def _check_text(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise PydanticCustomError("empty_text", "text is empty after stripping whitespace")
    _check_unicode(value, "text")
    limit = _limits(info).max_text_chars
    if len(value) > limit:
        raise PydanticCustomError(
            "text_too_long",
            "text has {length} characters, at most {limit} are allowed",
            {"length": len(value), "limit": limit},
        )
    return value


# Constraints that only shape the OpenAPI document (the validators above enforce them, with
# better messages). "x-limit-*" entries are replaced with the server's limits when the
# document is served (service.openapi).
MAX_TEXTS_MARKER = {"minItems": 1, "x-limit-max-items": "max_texts"}
MAX_CHARS_MARKER = {"x-limit-max-length": "max_text_chars"}
# Python's whitespace (str.isspace) is JSON Schema's (ECMA) \s plus these characters.
_NOT_SPACE = r"[^\s\x1c-\x1f\x85]"

InputText = Annotated[
    StrictStr,
    AfterValidator(_check_text),
    Field(json_schema_extra={"minLength": 1, "pattern": _NOT_SPACE, **MAX_CHARS_MARKER}),
]


def _check_translatable(value: str) -> str:
    if all(map(is_blank_char, value)):
        raise PydanticCustomError("nothing_to_translate", NOTHING_TO_TRANSLATE)
    return value


@functools.cache
def _translatable_pattern() -> str:
    # A scan of every code point (about 0.25 s): done once, when the schema is first generated
    # (create_app documents the routes), not at import, so the training code, the CLI and
    # tests that only validate requests never pay for it.
    return f"[^{char_class(is_blank_char)}]"


def _translatable_schema(schema: dict[str, Any]) -> None:
    schema.update({"minLength": 1, "pattern": _translatable_pattern(), **MAX_CHARS_MARKER})


TranslatableText = Annotated[
    StrictStr,
    AfterValidator(_check_text),
    AfterValidator(_check_translatable),
    Field(json_schema_extra=_translatable_schema),
]


def _check_item_count(value: Any, info: ValidationInfo, noun: str) -> Any:
    """Reject an empty list or one longer than ``max_texts`` (``noun`` names the items).

    Run before the items are validated, so 10,000 items give one error rather than 10,000.
    """
    if not isinstance(value, list):
        return value
    if not value:
        raise PydanticCustomError(
            f"too_few_{noun}s", "at least 1 {noun} is required, got none", {"noun": noun}
        )
    limit = _limits(info).max_texts
    if len(value) > limit:
        raise PydanticCustomError(
            f"too_many_{noun}s",
            "at most {limit} {noun}s per request, got {count}",
            {"limit": limit, "count": len(value), "noun": noun},
        )
    return value


class SentimentRequest(BaseModel):
    """Texts to classify, answered in the same order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"texts": ["A wonderful film.", "Dull and too long."]}]},
    )

    texts: list[InputText] = Field(
        json_schema_extra=MAX_TEXTS_MARKER,
        description="Between 1 and MAX_TEXTS_PER_REQUEST (default 256) texts, each non-blank "
        "and at most MAX_TEXT_CHARS (default 20000) characters. Texts longer than the model's "
        "max_tokens are truncated and flagged, not rejected.",
    )

    @field_validator("texts", mode="before")
    @classmethod
    def _check_count(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_item_count(value, info, "text")


class TextBatch(BaseModel):
    """The ``text`` input of the V2 inference endpoints, validated like ``texts`` of /v1."""

    text: list[InputText]

    @field_validator("text", mode="before")
    @classmethod
    def _check_count(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_item_count(value, info, "text")


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


def _check_token(value: str) -> str:
    if not value:
        raise PydanticCustomError("empty_token", "a token must not be empty")
    _check_unicode(value, "token")
    if any(char.isspace() for char in value):
        raise PydanticCustomError(
            "whitespace_in_token",
            "a token must not contain whitespace (split it into several tokens)",
        )
    return value


def _check_sentence(value: list[str], info: ValidationInfo) -> list[str]:
    if not value:
        raise PydanticCustomError("empty_sentence", "a sentence needs at least 1 token, got none")
    # The sentence is tagged as its tokens joined by single spaces, so that string is limited.
    length = sum(len(token) for token in value) + len(value) - 1
    limit = _limits(info).max_text_chars
    if length > limit:
        raise PydanticCustomError(
            "text_too_long",
            "the tokens joined by spaces have {length} characters, at most {limit} are allowed",
            {"length": length, "limit": limit},
        )
    return value


InputToken = Annotated[
    StrictStr,
    AfterValidator(_check_token),
    # Not "$", which in Python's re also matches before a final newline: the lookahead is "end".
    Field(
        json_schema_extra={
            "minLength": 1,
            "pattern": rf"^{_NOT_SPACE}+(?![\s\S])",
            **MAX_CHARS_MARKER,
        }
    ),
]
InputSentence = Annotated[
    list[InputToken], AfterValidator(_check_sentence), Field(json_schema_extra={"minItems": 1})
]


class NerRequest(BaseModel):
    """Raw texts or pre-tokenized sentences to tag (exactly one of the two), answered in order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["EU rejects German call to boycott British lamb."]},
                {"tokens": [["EU", "rejects", "German", "call", "to", "boycott", "British"]]},
            ],
            # Exactly one of the two (with additionalProperties false): said so rather than
            # with oneOf, which OpenAPI client generators cannot type.
            "minProperties": 1,
            "maxProperties": 1,
        },
    )

    # An absent field is an empty list, which a client cannot send (the count check runs on
    # every value sent), so "absent" needs no None: neither field is nullable.
    texts: list[InputText] = Field(
        default_factory=list,
        json_schema_extra=MAX_TEXTS_MARKER,
        description="Raw texts: between 1 and MAX_TEXTS_PER_REQUEST (default 256), each "
        "non-blank and at most MAX_TEXT_CHARS (default 20000) characters. Each text is "
        "tokenized and split into sentences by the service; long sentences are tagged in "
        "windows, never truncated. A sentence in small letters only is read with its words in "
        "their usual case (the model's truecaser); offsets and token texts stay the input's. "
        "Send either `texts` or `tokens`, not both.",
    )
    tokens: list[InputSentence] = Field(
        default_factory=list,
        json_schema_extra=MAX_TEXTS_MARKER,
        description="Pre-tokenized sentences (e.g. CoNLL tokens): between 1 and "
        "MAX_TEXTS_PER_REQUEST sentences, each a non-empty list of non-empty tokens without "
        "whitespace. A sentence is tagged as one sentence, as if it were the text made of its "
        "tokens joined by single spaces, which must be at most MAX_TEXT_CHARS characters "
        "(and, like a text's, read with its words in their usual case if in small letters "
        "only); offsets in the response point into that joined text. Send either `texts` or "
        "`tokens`, not both.",
    )

    @field_validator("texts", "tokens", mode="before")
    @classmethod
    def _check_count(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_item_count(value, info, "text" if info.field_name == "texts" else "sentence")

    @model_validator(mode="after")
    def _exactly_one_input(self) -> NerRequest:
        if not self.texts and not self.tokens:
            raise PydanticCustomError(
                "missing_input",
                "send exactly one of 'texts' (raw strings) or 'tokens' (pre-tokenized "
                "sentences); got neither",
            )
        if self.texts and self.tokens:
            raise PydanticCustomError(
                "conflicting_inputs",
                "send exactly one of 'texts' (raw strings) or 'tokens' (pre-tokenized "
                "sentences); got both",
            )
        return self


_OFFSET_NOTE = (
    "Offsets count Unicode code points (Python string indices, not bytes or UTF-16 units) "
    "into the input text; for `tokens` input, into the tokens joined by single spaces."
)


class NerToken(BaseModel):
    """One token of the input and the tag the model gave it."""

    model_config = ConfigDict(from_attributes=True)

    text: str = Field(description="The token, exactly `input[start:end]`.", examples=["EU"])
    start: int = Field(ge=0, description=f"Offset of the token's first character. {_OFFSET_NOTE}")
    end: int = Field(
        ge=0, description=f"Offset just past the token's last character. {_OFFSET_NOTE}"
    )
    tag: str = Field(
        description="IOB2 tag: 'O' (outside any entity), 'B-X' (first token of an entity of "
        "type X) or 'I-X' (a following token of it).",
        examples=["B-ORG"],
    )
    score: float = Field(
        ge=0.0,
        le=1.0,
        description="The CRF's marginal probability that this token carries `tag`, "
        "P(y_token = tag | window), from forward-backward over the CRF. The window is the "
        "token's sentence, or for a sentence longer than the model's max_tokens the window of "
        "it the token's tag comes from, where it has at least max_tokens // 4 tokens of context "
        "on each side (fewer at the sentence's ends). An entity's `score` is never above the "
        "`score` of any of its tokens. A model probability, not a calibrated accuracy.",
        examples=[0.998],
    )


class NerEntity(BaseModel):
    """A named entity: one or more consecutive tokens with a B-X, I-X, ... tag sequence."""

    model_config = ConfigDict(from_attributes=True)

    type: str = Field(
        description="Entity type, one of the model's (the X of its B-X/I-X labels in "
        "GET /v1/models): PER, ORG, LOC or MISC for the CoNLL-2003 model.",
        examples=["ORG"],
    )
    text: str = Field(
        description="The entity, exactly `input[start:end]` (whitespace between its tokens "
        "included as sent).",
        examples=["EU"],
    )
    start: int = Field(ge=0, description=f"Offset of the entity's first character. {_OFFSET_NOTE}")
    end: int = Field(
        ge=0, description=f"Offset just past the entity's last character. {_OFFSET_NOTE}"
    )
    score: float = Field(
        ge=0.0,
        le=1.0,
        description="The CRF's probability that the entity's tokens carry exactly these tags "
        "(B-X, I-X, ...), P(y_first..y_last = B-X, I-X, ... | window), from forward-backward "
        "over the CRF. The window is the entity's sentence, or for a sentence longer than the "
        "model's max_tokens a window of it that holds the whole entity (the one whose tags "
        "most of its tokens take); an entity that no window holds whole (one longer than two "
        "windows' overlap) gets the product of the probabilities of its parts, each in the "
        "window its tags come from. It is never more than the `score` (the marginal "
        "probability of the tag) of any one of its tokens. A model probability, not a "
        "calibrated accuracy.",
    )


class NerResult(BaseModel):
    """The tagging of one input text or sentence."""

    model_config = ConfigDict(from_attributes=True)

    entities: list[NerEntity] = Field(
        description="Entities in text order. An entity never spans two sentences; within a "
        "sentence longer than the model's max_tokens it may cross the boundary between two of "
        "its (overlapping) windows."
    )
    tokens: list[NerToken] = Field(
        description="Every token of the input, in text order, with its tag and that tag's "
        "probability."
    )


class NerResponse(BaseModel):
    """Results of ``POST /v1/ner``, one per input text or sentence, in request order."""

    model: ModelRef
    results: list[NerResult]


def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: a number without a fractional part (3 or 3.0), never a string or
    a boolean (which pydantic's lax mode would convert)."""
    if isinstance(value, str | bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]

MAX_BEAM_SIZE = 10
BeamSize = Annotated[int, Field(ge=1, le=MAX_BEAM_SIZE), BeforeValidator(_json_integer)]
MAX_TRANSLATION_LENGTH = 512  # a model's own cap (manifest ``max_length``) may be lower
TargetLength = Annotated[
    int, Field(ge=1, le=MAX_TRANSLATION_LENGTH), BeforeValidator(_json_integer)
]


class TranslationRequest(BaseModel):
    """Texts to translate, answered in the same order, and how to decode them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["A man is walking in the park.", "Two dogs play in the snow."]},
                {"texts": ["A child sleeps."], "beam_size": 1, "return_attention": True},
            ]
        },
    )

    texts: list[TranslatableText] = Field(
        json_schema_extra=MAX_TEXTS_MARKER,
        description="Between 1 and MAX_TEXTS_PER_REQUEST (default 256) texts, each non-blank "
        "and at most MAX_TEXT_CHARS (default 20000) characters; a text with nothing left to "
        "translate after normalization (only whitespace, control or format characters, or "
        "nothing the model's subword normalization keeps) is rejected (422). "
        "Texts longer than the model's max_source_tokens subwords are truncated and flagged "
        "(`truncated`), not rejected. A text is translated sentence by sentence; a sentence in "
        "capitals, title case or small letters only is read in sentence case (the model's "
        "truecaser), and one in capitals is translated into capitals. All texts of a request "
        "are translated together in batches; a text's translation does not depend on the other "
        "texts.",
    )
    beam_size: BeamSize | None = Field(
        default=None,
        description=f"Beam width, 1 (greedy decoding) to {MAX_BEAM_SIZE}. null: the model's "
        "own, its manifest's beam_size (5 for the committed model), which its dev BLEU was "
        "measured with.",
    )
    max_length: TargetLength | None = Field(
        default=None,
        description="Most target subwords to generate per sentence (end of sentence included), "
        f"1 to {MAX_TRANSLATION_LENGTH}; the model's own limits (a * source subwords + b, and "
        "its manifest's max_length) still apply. null: only the model's limits.",
    )
    return_attention: StrictBool = Field(
        default=False,
        description="Also return each result's attention weights (target x source subwords).",
    )

    @field_validator("texts", mode="before")
    @classmethod
    def _check_count(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_item_count(value, info, "text")


class TranslationAttention(BaseModel):
    """Where the decoder looked: one row per target subword, one column per source subword.
    A text of several sentences has the rows and columns of each in turn, and each sentence's
    target subwords attend to its own source subwords only (the other weights are 0)."""

    model_config = ConfigDict(from_attributes=True)

    source_tokens: list[str] = Field(
        description="Source subwords ('▁' marks a word start), each sentence's ending with "
        "'</s>': those the model read, so a sentence in capitals, title case or small letters "
        "shows the sentence-case subwords it was read as."
    )
    target_tokens: list[str] = Field(
        description="Generated subwords, each sentence's ending with '</s>' (also where "
        "max_length cut it off before the model ended it: the '</s>' is then forced)."
    )
    weights: list[list[float]] = Field(
        description="Attention weights, shape (len(target_tokens), len(source_tokens)); every "
        "row sums to 1."
    )


class TranslationResult(BaseModel):
    """The translation of one text."""

    model_config = ConfigDict(from_attributes=True)

    translation: str = Field(
        description="The translated text: its sentences, each translated on its own, joined "
        "with the whitespace that separated them.",
        examples=["Ein Mann läuft."],
    )
    score: float = Field(
        description="Average log-probability per generated subword (each sentence's end "
        "included), at most 0; closer to 0 is more confident.",
    )
    truncated: bool = Field(
        description="True when a sentence of the text had more subwords than the model reads "
        "(max_source_tokens) and only its beginning was translated.",
    )
    attention: TranslationAttention | None = Field(
        default=None,
        description="Present only when the request set `return_attention`.",
    )


class TranslationResponse(BaseModel):
    """Results of ``POST /v1/translate``, one per input text, in request order."""

    model: ModelRef
    results: list[TranslationResult]


class ModelInfo(BaseModel):
    """A loaded model, as listed by ``GET /v1/models``."""

    name: str = Field(description="Model folder name.")
    version: str = Field(description="Version recorded in the manifest.")
    task: str = Field(description="What the model does: sentiment, ner or translation.")
    created_at: str = Field(description="When the model was exported.")
    labels: list[str] = Field(description="Output labels, in the model's order.")
    metrics: dict[str, float] = Field(
        description="Dev-set metrics of the graphs loaded: measured at export for fp32, at "
        "quantization for int8."
    )
    providers: list[str] = Field(
        description="ONNX Runtime execution providers the model's session actually uses."
    )
    precision: Precision = Field(
        description="Precision of the graphs loaded: MODEL_PRECISION when the model has that "
        "variant, else fp32."
    )


class ModelList(BaseModel):
    """Body of ``GET /v1/models``."""

    models: list[ModelInfo]


class ReloadResponse(BaseModel):
    """Body of ``POST /v1/models/{name}/reload``: the model now serving in this worker."""

    model: ModelInfo
    previous_version: str | None = Field(
        description="Version that served before the reload; null if the model had not loaded."
    )
    warning: str | None = Field(
        default=None,
        description=(
            "Set when the server's other workers could not be told to reload (see the log): "
            "they serve their version until a reload reaches them; null otherwise."
        ),
    )


class LiveStatus(BaseModel):
    """Body of a successful liveness probe (``live`` as the KServe V2 protocol has it)."""

    status: Literal["live"] = "live"
    live: Literal[True] = True
    models: list[str] = Field(default_factory=list, description="Models loaded in this worker.")


class ReadyStatus(BaseModel):
    """Body of a successful readiness probe (``ready`` as the KServe V2 protocol has it)."""

    status: Literal["ready"] = "ready"
    ready: Literal[True] = True
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
