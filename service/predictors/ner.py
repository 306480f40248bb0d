"""Named-entity recognition: text -> tokens -> sentences/windows -> ONNX emissions -> CRF tags.

The exported graph maps words, casing classes and characters to per-token emission scores;
decoding (Viterbi) and confidence scores (forward-backward) run in numpy with the CRF scores of
``crf.json`` (:mod:`service.predictors.viterbi`).

Conventions (the API documents the same):

* Offsets are character offsets ``[start, end)`` into the input string; for pre-tokenized input
  into the tokens joined with single spaces.
* A raw text is split into sentences (:func:`service.text.segment.sentence_spans`), and any
  piece longer than the model's ``max_tokens`` into near-equal windows. Nothing is cut off. The
  pieces (the *rows*) go to the predictor's ``scheduler``, which runs the graph on length-sorted
  padded batches (in the service, batched with other requests' pieces); the CRF then decodes
  the request's own pieces. Pre-tokenized input is taken as one sentence (windowed only if too
  long).
* Entities come from IOB2 tags: ``B-X`` starts an entity; ``I-X`` continues an entity of type X
  that the previous token belongs to, and otherwise starts a new one (the lenient CoNLL/seqeval
  default reading rather than seqeval's strict mode, which would drop it). The exported CRF
  forbids such transitions, so this only matters for CRFs trained without constraints. An
  entity never crosses a sentence or window boundary.
* ``NerToken.score`` (a token's ``score`` in ``POST /v1/ner``) is the CRF marginal
  ``P(y_t = tag | sentence)`` of the predicted tag; ``NerEntity.score`` is the CRF probability
  that the entity's tokens carry exactly the predicted tags
  (``P(y_s..y_e = B-X, I-X, ... | sentence)``), never more than its tokens' lowest score.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import ValidationError

from service.predictors.viterbi import CrfParameters, forward_backward, viterbi_decode
from service.runtime.batcher import InlineBatches, RowScheduler, length_sorted_batches
from service.runtime.manifest import ArtifactError, Manifest
from service.text.constants import CHARS_FILE, CRF_FILE, VOCAB_FILE
from service.text.features import (
    EMISSIONS,
    NER_INPUT_NAMES,
    NerEncoder,
    NerFeatures,
    NerPreprocessing,
    pad_ner_batch,
)
from service.text.segment import segment_spans
from service.text.tokenize import Token, tokenize
from service.text.vocab import Vocab

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 64


class GraphRunner(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the predictor uses."""

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, np.ndarray]
    ) -> Sequence[np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class NerToken:
    """A token, its ``[start, end)`` character offsets, its tag and that tag's marginal."""

    text: str
    start: int
    end: int
    tag: str
    score: float  # marginal probability of ``tag``


@dataclass(frozen=True, slots=True)
class NerEntity:
    """An entity: type (PER, ORG, ...), its text and offsets, and the CRF probability of it."""

    type: str
    text: str
    start: int
    end: int
    score: float  # probability of exactly this entity's tag sequence


@dataclass(frozen=True, slots=True)
class NerPrediction:
    """The tagging of one input: every token, and the entities they form."""

    tokens: list[NerToken]
    entities: list[NerEntity]


@dataclass(frozen=True, slots=True)
class _Piece:
    """One sentence or window: tokens ``[start, end)`` of input ``row``."""

    row: int
    start: int
    end: int


def iob2_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` token ranges of the entities in an IOB2 tag sequence.

    ``I-X`` after a token outside an X entity starts a new entity (see the module docstring).
    """
    entities: list[tuple[str, int, int]] = []
    current: list | None = None  # [type, start, end]
    for index, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and current is not None and current[0] == kind:
            current[2] = index + 1
            continue
        if current is not None:
            entities.append(tuple(current))
            current = None
        if prefix in ("B", "I"):
            current = [kind, index, index + 1]
    if current is not None:
        entities.append(tuple(current))
    return entities


class NerPredictor:
    """Tags texts or pre-tokenized sentences with an emission graph and a numpy CRF."""

    task = "ner"
    # A padded step costs as much as a real one: see service.runtime.batcher.
    min_batch_fill = 0.8

    def __init__(
        self,
        manifest: Manifest,
        folder: Path,
        session: GraphRunner,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        folder = Path(folder)
        try:
            self.preprocessing = NerPreprocessing(**manifest.preprocessing)
        except ValidationError as exc:
            raise ArtifactError(f"{folder}: manifest.preprocessing is invalid: {exc}") from None
        self.crf = CrfParameters.from_json(folder / CRF_FILE)
        self.tags = list(manifest.labels)
        if list(self.crf.tags) != self.tags:
            raise ArtifactError(
                f"{folder}: {CRF_FILE} tags {self.crf.tags} differ from labels {self.tags}"
            )
        bad = [t for t in self.tags if t != "O" and t[:2] not in ("B-", "I-")]
        if bad:
            raise ArtifactError(f"{folder}: labels {bad} are not IOB2 tags")
        self.encoder = NerEncoder(
            Vocab.from_json(folder / VOCAB_FILE),
            Vocab.from_json(folder / CHARS_FILE),
            self.preprocessing,
        )
        self.session = session
        self.max_batch_size = max_batch_size  # also how many pieces the CRF decodes at once
        self.scheduler: RowScheduler = InlineBatches(
            self.task, self.run_rows, max_batch_size, min_fill=self.min_batch_fill
        )

    @classmethod
    def from_artifact(
        cls, folder: Path, manifest: Manifest, sessions: Mapping[str, object]
    ) -> NerPredictor:
        """Build from a verified artifact folder and its (single) ``service.runtime`` session."""
        if len(sessions) != 1:
            raise ArtifactError(f"{folder}: an NER model has one graph, found {list(sessions)}")
        session = next(iter(sessions.values()))
        names = set(getattr(session, "input_names", NER_INPUT_NAMES))
        if names != set(NER_INPUT_NAMES) or EMISSIONS not in getattr(
            session, "output_names", [EMISSIONS]
        ):
            raise ArtifactError(
                f"{folder}: an NER graph takes {list(NER_INPUT_NAMES)} and returns {EMISSIONS!r}"
            )
        return cls(manifest, folder, _NamedOutputs(session))

    def warm_up(self) -> None:
        """Tag one short text, so that a broken artifact fails at load, not on a request."""
        self.predict_texts(["Warm up in Paris."])

    def predict_batch(self, texts: Sequence[str]) -> list[NerPrediction]:
        """Same as :meth:`predict_texts` (the entry point every predictor has)."""
        return self.predict_texts(texts)

    def predict_texts(self, texts: Sequence[str]) -> list[NerPrediction]:
        """Tokenize, split and tag raw texts; offsets point into each text."""
        tokens = [tokenize(text) for text in texts]
        return self._predict(texts, tokens, self.preprocessing.split_sentences)

    def predict_tokens(self, sentences: Sequence[Sequence[str]]) -> list[NerPrediction]:
        """Tag pre-tokenized sentences; offsets point into ``" ".join(tokens)``."""
        texts, token_lists = [], []
        for words in sentences:
            if any(not w for w in words):
                raise ValueError("tokens must not be empty strings")
            offsets = np.cumsum([0] + [len(w) + 1 for w in words])
            token_lists.append(
                [Token(w, int(s), int(s) + len(w)) for w, s in zip(words, offsets, strict=False)]
            )
            texts.append(" ".join(words))
        return self._predict(texts, token_lists, split_sentences=False)

    def _predict(
        self, texts: Sequence[str], tokens: Sequence[Sequence[Token]], split_sentences: bool
    ) -> list[NerPrediction]:
        pieces = [
            _Piece(row, start, end)
            for row, row_tokens in enumerate(tokens)
            for start, end in segment_spans(
                row_tokens, self.preprocessing.max_tokens, split_sentences=split_sentences
            )
        ]
        words = [[t.text for t in tokens[p.row][p.start : p.end]] for p in pieces]
        emissions = self.scheduler.submit([self.encoder.encode(w) for w in words])
        tagged: list[list[NerToken]] = [[] for _ in texts]
        entities: list[list[NerEntity]] = [[] for _ in texts]
        lengths = [p.end - p.start for p in pieces]
        for batch in length_sorted_batches(lengths, self.max_batch_size):
            chunk = [pieces[i] for i in batch]
            self._decode(texts, tokens, chunk, [emissions[i] for i in batch], tagged, entities)
        return [
            NerPrediction(
                tokens=sorted(t, key=lambda tok: tok.start),
                entities=sorted(e, key=lambda ent: ent.start),
            )
            for t, e in zip(tagged, entities, strict=True)
        ]

    def run_rows(self, features: Sequence[NerFeatures]) -> list[np.ndarray]:
        """Emission scores ``(tokens, tags)`` of each token sequence, run as one padded batch."""
        feeds = pad_ner_batch(features)
        emissions = self._emissions(feeds)
        return [emissions[row, :length] for row, length in enumerate(feeds["lengths"])]

    def _decode(
        self,
        texts: Sequence[str],
        tokens: Sequence[Sequence[Token]],
        batch: Sequence[_Piece],
        emissions: Sequence[np.ndarray],
        tagged: list[list[NerToken]],
        entities: list[list[NerEntity]],
    ) -> None:
        """CRF-decode the pieces of ``batch`` (their emissions padded together) into tokens and
        entities of their input rows."""
        lengths = np.array([len(e) for e in emissions], dtype=np.int64)
        padded = np.zeros((len(emissions), int(lengths.max()), len(self.tags)), np.float64)
        for row, scores in enumerate(emissions):
            padded[row, : len(scores)] = scores
        paths = viterbi_decode(padded, lengths, self.crf)
        posterior = forward_backward(padded, lengths, self.crf)
        marginals = posterior.marginals()
        for index, (piece, path) in enumerate(zip(batch, paths, strict=True)):
            piece_tokens = tokens[piece.row][piece.start : piece.end]
            tags = [self.tags[k] for k in path]
            # exp of a log-probability can round to just above 1; a probability cannot.
            scores = [min(float(marginals[index, t, k]), 1.0) for t, k in enumerate(path)]
            tagged[piece.row] += [
                NerToken(tok.text, tok.start, tok.end, tag, score)
                for tok, tag, score in zip(piece_tokens, tags, scores, strict=True)
            ]
            text = texts[piece.row]
            for kind, first, last in iob2_entities(tags):
                start, end = piece_tokens[first].start, piece_tokens[last - 1].end
                span = posterior.span_probability(index, first, last, path[first:last].tolist())
                # True in exact arithmetic; the min keeps it true after rounding, as documented.
                score = min(span, *scores[first:last])
                entities[piece.row].append(NerEntity(kind, text[start:end], start, end, score))

    def _emissions(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (emissions,) = self.session.run([EMISSIONS], feeds)
        expected = (*feeds["word_ids"].shape, len(self.tags))
        if emissions.shape != expected:
            raise ArtifactError(
                f"the NER graph returned {EMISSIONS} of shape {emissions.shape}, "
                f"expected {expected}"
            )
        return emissions


class _NamedOutputs:
    """Adapts ``service.runtime.session.OnnxSession`` (``run(feeds) -> dict``) to
    :class:`GraphRunner`."""

    def __init__(self, session):
        self.session = session

    def run(
        self, output_names: Sequence[str] | None, input_feed: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]:
        outputs = self.session.run(input_feed)
        return [outputs[name] for name in (output_names or list(outputs))]
