"""What each task looks like over the Open Inference Protocol: its output tensors, and how a
batch of texts becomes them. A new task (translation) adds one adapter to :data:`V2_ADAPTERS`.

Every model takes one input, ``text`` (BYTES, shape ``[N]``, UTF-8).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from service.api.v2_schemas import TensorMetadata
from service.predictors.ner import NerPredictor
from service.predictors.sentiment import SentimentPredictor
from service.runtime.registry import LoadedModel
from service.schemas import NerEntity

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

    def infer(self, model: LoadedModel, texts: Sequence[str]) -> list[OutputTensor]:
        """Every output for ``texts``, first axis in text order."""
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

    def infer(self, model: LoadedModel, texts: Sequence[str]) -> list[OutputTensor]:
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

    def infer(self, model: LoadedModel, texts: Sequence[str]) -> list[OutputTensor]:
        predictions = cast(NerPredictor, model.predictor).predict_texts(texts)
        entities = [
            json.dumps(
                [NerEntity.model_validate(e).model_dump(mode="json") for e in p.entities],
                ensure_ascii=False,
            )
            for p in predictions
        ]
        return [OutputTensor("entities", "BYTES", _bytes_array(entities))]


def _bytes_array(values: Sequence[str]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = [v.encode("utf-8") for v in values]
    return array


V2_ADAPTERS: dict[str, TaskAdapter] = {
    "sentiment": SentimentAdapter(),
    "ner": NerAdapter(),
}
