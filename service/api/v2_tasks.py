"""What each task looks like over the Open Inference Protocol: its output tensors, and how a
batch of texts (and the request's ``parameters``) becomes them. A new task adds one adapter to
:data:`V2_ADAPTERS`.

Every model takes one input, ``text`` (BYTES, shape ``[N]``, UTF-8).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from service.api.v2_schemas import TensorMetadata
from service.errors import BadRequest, ValidationFailed
from service.predictors.ner import NerPredictor
from service.predictors.sentiment import SentimentPredictor
from service.predictors.translator import Translator, Untranslatable
from service.runtime.registry import LoadedModel
from service.schemas import BeamSize, NerEntity, TargetLength

TEXT_INPUT = TensorMetadata(name="text", datatype="BYTES", shape=[-1])


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """An output's values: a numpy array (BYTES: an object array of ``bytes``)."""

    name: str
    datatype: str
    data: np.ndarray


class TaskAdapter(Protocol):
    """The V2 face of one task."""

    def outputs(self, model: LoadedModel) -> list[TensorMetadata]:
        """Every output the model can return, as in its metadata."""
        ...

    def infer(
        self, model: LoadedModel, texts: Sequence[str], parameters: Mapping[str, Any]
    ) -> list[OutputTensor]:
        """Every output for ``texts``, first axis in text order. ``parameters`` are the
        request's; a task reads the ones it knows (a bad value raises :class:`BadRequest`)."""
        ...


class SentimentAdapter:
    """``label`` (BYTES [N]), ``score`` (FP32 [N]) and ``probabilities`` (FP32 [N, C]), the
    columns in the order of the metadata's ``parameters.labels``."""

    def outputs(self, model: LoadedModel) -> list[TensorMetadata]:
        classes = len(model.manifest.labels)
        return [
            TensorMetadata(name="label", datatype="BYTES", shape=[-1]),
            TensorMetadata(name="score", datatype="FP32", shape=[-1]),
            TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, classes]),
        ]

    def infer(
        self, model: LoadedModel, texts: Sequence[str], parameters: Mapping[str, Any]
    ) -> list[OutputTensor]:
        predictions = cast(SentimentPredictor, model.predictor).predict_batch(texts)
        labels = model.manifest.labels
        return [
            OutputTensor("label", "BYTES", _bytes_array([p.label for p in predictions])),
            OutputTensor("score", "FP32", np.array([p.score for p in predictions], np.float32)),
            OutputTensor(
                "probabilities",
                "FP32",
                np.array([[p.scores[label] for label in labels] for p in predictions], np.float32),
            ),
        ]


class NerAdapter:
    """``entities`` (BYTES [N]): each text's entity list as a JSON string, the entities shaped
    as in ``POST /v1/ner`` (type, text, start, end, score)."""

    def outputs(self, model: LoadedModel) -> list[TensorMetadata]:
        return [TensorMetadata(name="entities", datatype="BYTES", shape=[-1])]

    def infer(
        self, model: LoadedModel, texts: Sequence[str], parameters: Mapping[str, Any]
    ) -> list[OutputTensor]:
        predictions = cast(NerPredictor, model.predictor).predict_texts(texts)
        entities = [
            json.dumps(
                [NerEntity.model_validate(e).model_dump(mode="json") for e in p.entities],
                ensure_ascii=False,
            )
            for p in predictions
        ]
        return [OutputTensor("entities", "BYTES", _bytes_array(entities))]


class TranslationParameters(BaseModel):
    """The request ``parameters`` a translation reads, validated as in ``POST /v1/translate``;
    other parameters (``binary_data_output``...) are the protocol's and are ignored here."""

    model_config = ConfigDict(extra="ignore")

    beam_size: BeamSize | None = None  # the model's own
    max_length: TargetLength | None = None


TRANSLATION_PARAMETERS = ("beam_size", "max_length")


class TranslationAdapter:
    """``translation`` (BYTES [N]) and ``score`` (FP32 [N], the average log-probability per
    generated subword). Request ``parameters``: ``beam_size`` (1-10, default the model's) and
    ``max_length`` (target subwords), as in ``POST /v1/translate``."""

    def outputs(self, model: LoadedModel) -> list[TensorMetadata]:
        return [
            TensorMetadata(name="translation", datatype="BYTES", shape=[-1]),
            TensorMetadata(name="score", datatype="FP32", shape=[-1]),
        ]

    def infer(
        self, model: LoadedModel, texts: Sequence[str], parameters: Mapping[str, Any]
    ) -> list[OutputTensor]:
        settings = _translation_parameters(parameters)
        translator = cast(Translator, model.predictor)
        try:
            predictions = translator.predict_batch(
                texts, beam_size=settings.beam_size, max_length=settings.max_length
            )
        except Untranslatable as exc:
            index, why = exc.problems[0]
            raise BadRequest(f"text[{index}]: {why}") from None
        return [
            OutputTensor(
                "translation", "BYTES", _bytes_array([p.translation for p in predictions])
            ),
            OutputTensor("score", "FP32", np.array([p.score for p in predictions], np.float32)),
        ]


def _translation_parameters(parameters: Mapping[str, Any]) -> TranslationParameters:
    known = {k: v for k, v in parameters.items() if k in TRANSLATION_PARAMETERS}
    try:
        return TranslationParameters.model_validate(known)
    except ValidationError as exc:
        message = ValidationFailed.from_pydantic(exc).message
        raise BadRequest(f"parameters.{message}") from None


def _bytes_array(values: Sequence[str]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = [v.encode("utf-8") for v in values]
    return array


V2_ADAPTERS: dict[str, TaskAdapter] = {
    "sentiment": SentimentAdapter(),
    "ner": NerAdapter(),
    "translation": TranslationAdapter(),
}
