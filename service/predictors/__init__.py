"""Predictors: turn raw texts into model inputs, run the session(s), decode the outputs.

Every predictor answers ``predict_batch(texts)``; its task's handlers call that or a variant
with more options (NER's ``predict_tokens``, the translator's decoding options). Inside, it
encodes texts into *rows* (id sequences, sentence pieces), hands them to its ``scheduler`` (a
:class:`service.runtime.batcher.RowScheduler`: the cross-request dynamic batcher in the
service), which calls the predictor's batch-invariant ``run_rows`` on padded batches, and
decodes the outputs. :data:`PREDICTOR_FACTORIES` maps a manifest's
``task`` to the constructor that builds a predictor from a verified artifact folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from service.predictors.ner import NerPrediction, NerPredictor
from service.predictors.sentiment import SentimentPrediction, SentimentPredictor
from service.predictors.translator import TranslationPrediction, Translator
from service.runtime.batcher import RowScheduler
from service.runtime.manifest import Manifest
from service.runtime.session import OnnxSession


class Predictor(Protocol):
    """What the registry and the API need from any predictor."""

    task: str
    scheduler: RowScheduler
    min_batch_fill: float  # the batching policy's default min_fill for this model's rows
    max_request_tokens: int | None  # see service.predictors.budget; None: no limit

    def run_rows(self, rows: Sequence[Any]) -> Sequence[Any]:
        """Run the graph(s) on one batch of encoded rows; one output per row, in order."""
        ...

    def predict_batch(self, texts: Sequence[str]) -> list[Any]:
        """One result per text, in order."""
        ...

    def warm_up(self) -> None:
        """Run a tiny input through the graph(s) so that broken artifacts fail at load."""
        ...


PredictorFactory = Callable[[Path, Manifest, Mapping[str, OnnxSession]], Predictor]

PREDICTOR_FACTORIES: dict[str, PredictorFactory] = {
    "sentiment": SentimentPredictor.from_artifact,
    "ner": NerPredictor.from_artifact,
    "translation": Translator.from_artifact,
}

__all__ = [
    "PREDICTOR_FACTORIES",
    "NerPrediction",
    "NerPredictor",
    "Predictor",
    "PredictorFactory",
    "SentimentPrediction",
    "SentimentPredictor",
    "TranslationPrediction",
    "Translator",
]
