"""Sentiment classification: texts -> word ids -> ONNX graph -> label probabilities."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from service.predictors.budget import encode_within_budget
from service.runtime.batcher import InlineBatches, RowScheduler
from service.runtime.manifest import ArtifactError, Manifest
from service.runtime.session import OnnxSession
from service.text.constants import LABELS_FILE, VOCAB_FILE
from service.text.encoding import (
    LENGTHS,
    PROBABILITIES,
    TOKEN_IDS,
    EncodedText,
    WordEncoder,
    WordEncoderConfig,
)
from service.text.padding import pad_batch
from service.text.vocab import Vocab

DEFAULT_MAX_BATCH_SIZE = 64


@dataclass(frozen=True, slots=True)
class SentimentPrediction:
    """The classification of one text (fields match ``service.schemas.SentimentResult``)."""

    label: str
    score: float
    scores: dict[str, float]
    truncated: bool


class SentimentPredictor:
    """Classifies texts with a word-level RNN graph taking ``token_ids`` and ``lengths``.

    A request is encoded as a whole and its id sequences (the *rows*) are handed to
    ``scheduler``, which runs them through :meth:`run_rows` in length-sorted batches: by
    default in the calling thread, at most ``max_batch_size`` at a time; in the service, a
    :class:`service.runtime.batcher.DynamicBatcher` that batches them with other requests'
    rows. The graph uses ``lengths`` to ignore padding, so a text's result does not depend on
    the other texts it is batched with.
    """

    task = "sentiment"
    # A padded step costs as much as a real one: see service.runtime.batcher.
    min_batch_fill = 0.8
    max_request_tokens: int | None = None  # the registry sets MAX_REQUEST_TOKENS

    def __init__(
        self,
        session: OnnxSession,
        encoder: WordEncoder,
        labels: Sequence[str],
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        self.session = session
        self.encoder = encoder
        self.labels = list(labels)
        self.scheduler: RowScheduler = InlineBatches(
            self.task, self.run_rows, max_batch_size, min_fill=self.min_batch_fill
        )

    @classmethod
    def from_artifact(
        cls, folder: Path, manifest: Manifest, sessions: Mapping[str, OnnxSession]
    ) -> SentimentPredictor:
        """Build from a verified artifact folder and its (single) loaded graph."""
        if len(sessions) != 1:
            raise ArtifactError(
                f"{folder}: a sentiment model has one graph, found {list(sessions)}"
            )
        session = next(iter(sessions.values()))
        _require_names(folder, session)
        vocab = Vocab.from_json(manifest.listed_file(folder, VOCAB_FILE))
        _require_labels(folder, manifest)
        return cls(session, WordEncoder(vocab, _encoder_config(folder, manifest)), manifest.labels)

    def warm_up(self) -> None:
        """Run one text through the graph, so a broken artifact fails at load, not on a request."""
        self.predict_batch(["warm up"])

    def predict_batch(self, texts: Sequence[str]) -> list[SentimentPrediction]:
        """Classify ``texts``; results come back in the same order."""
        encoded = encode_within_budget(
            self.task,
            texts,
            self.encoder.encode,
            lambda e: len(e.ids),
            self.max_request_tokens,
            "words, each text cut at the model's max_tokens",
        )
        probabilities = self.scheduler.submit([e.ids for e in encoded])
        return [self._prediction(p, e) for p, e in zip(probabilities, encoded, strict=True)]

    def run_rows(self, sequences: Sequence[list[int]]) -> np.ndarray:
        """Label probabilities ``(batch, labels)`` of id sequences, run as one padded batch."""
        ids, lengths = pad_batch(sequences, pad_id=self.encoder.vocab.pad_id)
        output = self.session.run({TOKEN_IDS: ids, LENGTHS: lengths})[PROBABILITIES]
        if output.shape != (len(sequences), len(self.labels)):
            raise ArtifactError(
                f"{self.session.path}: {PROBABILITIES} has shape {output.shape}, expected "
                f"({len(sequences)}, {len(self.labels)}) for labels {self.labels}"
            )
        return output

    def _prediction(self, probabilities: np.ndarray, encoded: EncodedText) -> SentimentPrediction:
        best = int(np.argmax(probabilities))
        return SentimentPrediction(
            label=self.labels[best],
            score=float(probabilities[best]),
            scores={label: float(p) for label, p in zip(self.labels, probabilities, strict=True)},
            truncated=encoded.truncated,
        )


def _require_names(folder: Path, session: OnnxSession) -> None:
    inputs_ok = set(session.input_names) == {TOKEN_IDS, LENGTHS}
    if not inputs_ok or PROBABILITIES not in session.output_names:
        raise ArtifactError(
            f"{folder}: a sentiment graph takes {TOKEN_IDS!r}, {LENGTHS!r} and returns "
            f"{PROBABILITIES!r}; this one takes {session.input_names} and returns "
            f"{session.output_names}"
        )


def _require_labels(folder: Path, manifest: Manifest) -> None:
    """The manifest's labels name the graph's output columns, but the manifest has no checksum
    of its own: they must be those of the checksummed labels file written with the graph."""
    path = manifest.listed_file(folder, LABELS_FILE)
    try:
        labels = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a JSON list of labels: {exc}") from None
    if labels != manifest.labels:
        raise ArtifactError(
            f"{folder}: the manifest's labels {manifest.labels} are not {LABELS_FILE}'s "
            f"{labels}, the order of the graph's outputs: re-export the model"
        )


def _encoder_config(folder: Path, manifest: Manifest) -> WordEncoderConfig:
    try:
        return WordEncoderConfig(**manifest.preprocessing)
    except ValidationError as exc:
        raise ArtifactError(f"{folder}: manifest.preprocessing is invalid: {exc}") from None
