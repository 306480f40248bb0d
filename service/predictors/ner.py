"""Named-entity recognition: text -> tokens -> sentences/windows -> ONNX emissions -> CRF tags.

The exported graph maps words, casing classes and characters to per-token emission scores;
decoding (Viterbi) and confidence scores (forward-backward) run in numpy with the CRF scores of
``crf.json`` (:mod:`service.predictors.viterbi`).

Conventions (the API documents the same):

* Offsets are character offsets ``[start, end)`` into the input string; for pre-tokenized input
  into the tokens joined with single spaces.
* A raw text is split into sentences (:func:`service.text.segment.sentence_spans`). A sentence
  longer than the model's ``max_tokens`` is covered by overlapping windows of at most
  ``max_tokens`` tokens (:func:`service.text.segment.context_windows`); each token takes its tag
  and score from the one window whose *core* holds it, where it has at least ``max_tokens // 4``
  tokens of context on each side (fewer only at the sentence's ends); the tags of a window's
  context tokens are discarded. Nothing is cut off. The windows (the *rows*) go to the
  predictor's ``scheduler``, which runs the graph on length-sorted padded batches (in the
  service, batched with other requests' windows); the CRF then decodes each window on its own,
  and the kept tags are stitched into one tag sequence per sentence. Pre-tokenized input is
  taken as one sentence (windowed only if too long).
* Entities come from a sentence's stitched IOB2 tags, so an entity may cross a cut between two
  cores but never a sentence boundary: ``B-X`` starts an entity; ``I-X`` continues an entity of
  type X that the previous token belongs to, and otherwise starts a new one (the lenient
  CoNLL/seqeval default reading rather than seqeval's strict mode, which would drop it). The
  exported CRF forbids such transitions within a window, so this matters at a cut between cores
  (where two windows disagree) and for CRFs trained without constraints.
* A sentence written in small letters only, which the cased training news hardly has, is read
  with each word in its usual case there (the artifact's truecaser, ``NER_REWRITES``); the
  answer's tokens and offsets are the input's.
* Scores come from forward-backward over one window, never over a whole long sentence (a
  sentence of at most ``max_tokens`` is its own window, so for it "window" reads "sentence").
  ``NerToken.score`` (a token's ``score`` in ``POST /v1/ner``) is the CRF marginal
  ``P(y_t = tag | window)`` of the token's tag in the window whose core holds it.
  ``NerEntity.score`` is the CRF probability that the entity's tokens carry exactly their tags
  (``P(y_s..y_e = B-X, I-X, ... | window)``) in one window that holds all of them: of those,
  the one whose core holds most of them (the first on a tie). An entity no window holds whole
  (longer than the overlap of two windows) gets the product of the probabilities of its parts,
  each part being the tokens in one core, scored in that core's window. Either way an entity's
  score is capped at its tokens' lowest score, which it can exceed only when it comes from
  another window than theirs (or by rounding). Everything depends on the text alone, not on
  what it is batched with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import ValidationError

from service.predictors.budget import encode_within_budget
from service.predictors.viterbi import (
    CrfParameters,
    CrfPosterior,
    forward_backward,
    viterbi_decode,
)
from service.runtime.batcher import InlineBatches, RowScheduler, length_sorted_batches
from service.runtime.manifest import ArtifactError, Manifest
from service.runtime.session import OnnxSession
from service.text.constants import CHARS_FILE, CRF_FILE, VOCAB_FILE
from service.text.features import (
    EMISSIONS,
    NER_INPUT_NAMES,
    NerEncoder,
    NerFeatures,
    NerPreprocessing,
    pad_ner_batch,
)
from service.text.segment import Window, sentence_windows
from service.text.tokenize import Token, tokenize
from service.text.truecase import Casing, Truecaser
from service.text.vocab import Vocab

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 64
# The sentences the truecaser rewrites: those in small letters only. CoNLL's news has headlines
# and tables in capitals and in title case, and the model reads such sentences better as written
# than truecased; a sentence in small letters it had hardly seen, and it tagged almost nothing.
NER_REWRITES = frozenset({Casing.LOWER})


class Graph(Protocol):
    """The part of ``service.runtime.session.OnnxSession`` the predictor uses (tests stand in
    for it): named inputs in, named outputs out."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]: ...


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
class _DecodedWindow:
    """A CRF-decoded window: its Viterbi ``path`` (tag ids), the marginal of each tag on it, and
    its forward-backward results (row ``index`` of ``posterior``)."""

    window: Window
    path: list[int]
    scores: list[float]
    posterior: CrfPosterior
    index: int

    @property
    def core(self) -> slice:
        """Where the window's core lies in ``path`` and ``scores``."""
        return slice(
            self.window.core_start - self.window.start, self.window.core_end - self.window.start
        )

    def span_probability(self, first: int, last: int, tags: Sequence[int]) -> float:
        """``P(tokens [first, last) carry tags | window)``; indices are the input's."""
        start = self.window.start
        return self.posterior.span_probability(self.index, first - start, last - start, tags)


def scoring_window(windows: Sequence[Window], first: int, last: int) -> int | None:
    """Index of the window an entity on tokens ``[first, last)`` is scored in: of the windows
    holding all its tokens, the one whose core holds most of them (the first on a tie); ``None``
    when no window holds them all."""
    best, best_count = None, 0
    for index, window in enumerate(windows):
        if window.start <= first and last <= window.end:
            count = min(last, window.core_end) - max(first, window.core_start)
            if best is None or count > best_count:
                best, best_count = index, count
    return best


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
    max_request_tokens: int | None = None  # the registry sets MAX_REQUEST_TOKENS

    def __init__(
        self,
        manifest: Manifest,
        folder: Path,
        session: Graph,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        folder = Path(folder)
        try:
            self.preprocessing = NerPreprocessing(**manifest.preprocessing)
        except ValidationError as exc:
            raise ArtifactError(f"{folder}: manifest.preprocessing is invalid: {exc}") from None
        self.crf = CrfParameters.from_json(manifest.listed_file(folder, CRF_FILE))
        self.tags = list(manifest.labels)
        if list(self.crf.tags) != self.tags:
            raise ArtifactError(
                f"{folder}: {CRF_FILE} tags {self.crf.tags} differ from labels {self.tags}"
            )
        bad = [t for t in self.tags if t != "O" and t[:2] not in ("B-", "I-")]
        if bad:
            raise ArtifactError(f"{folder}: labels {bad} are not IOB2 tags")
        self.encoder = NerEncoder(
            Vocab.from_json(manifest.listed_file(folder, VOCAB_FILE)),
            Vocab.from_json(manifest.listed_file(folder, CHARS_FILE)),
            self.preprocessing,
        )
        self.truecaser = None
        if self.preprocessing.truecaser is not None:
            path = manifest.listed_file(folder, self.preprocessing.truecaser)
            self.truecaser = Truecaser.from_json(path, NER_REWRITES)
        self.session = session
        self.max_batch_size = max_batch_size  # also how many pieces the CRF decodes at once
        self.scheduler: RowScheduler = InlineBatches(
            self.task, self.run_rows, max_batch_size, min_fill=self.min_batch_fill
        )

    @classmethod
    def from_artifact(
        cls, folder: Path, manifest: Manifest, sessions: Mapping[str, OnnxSession]
    ) -> NerPredictor:
        """Build from a verified artifact folder and its (single) loaded graph."""
        if len(sessions) != 1:
            raise ArtifactError(f"{folder}: an NER model has one graph, found {list(sessions)}")
        session = next(iter(sessions.values()))
        names_ok = set(session.input_names) == set(NER_INPUT_NAMES)
        if not names_ok or EMISSIONS not in session.output_names:
            raise ArtifactError(
                f"{folder}: an NER graph takes {list(NER_INPUT_NAMES)} and returns {EMISSIONS!r}; "
                f"this one takes {session.input_names} and returns {session.output_names}"
            )
        return cls(manifest, folder, session)

    def warm_up(self) -> None:
        """Tag one short text, so that a broken artifact fails at load, not on a request."""
        self.predict_texts(["Warm up in Paris."])

    def predict_batch(self, texts: Sequence[str]) -> list[NerPrediction]:
        """Same as :meth:`predict_texts` (the entry point every predictor has)."""
        return self.predict_texts(texts)

    def predict_texts(self, texts: Sequence[str]) -> list[NerPrediction]:
        """Tokenize, split and tag raw texts; offsets point into each text."""
        limit = self.max_request_tokens
        tokens = encode_within_budget(self.task, texts, tokenize, len, limit, "words")
        return self._predict(texts, tokens, self.preprocessing.split_sentences)

    def predict_tokens(self, sentences: Sequence[Sequence[str]]) -> list[NerPrediction]:
        """Tag pre-tokenized sentences; offsets point into ``" ".join(tokens)``."""
        limit = self.max_request_tokens
        token_lists = encode_within_budget(self.task, sentences, _given_tokens, len, limit, "words")
        texts = [" ".join(words) for words in sentences]
        return self._predict(texts, token_lists, split_sentences=False)

    def _predict(
        self, texts: Sequence[str], tokens: Sequence[Sequence[Token]], split_sentences: bool
    ) -> list[NerPrediction]:
        sentences = [
            (row, windows)
            for row, row_tokens in enumerate(tokens)
            for windows in sentence_windows(
                row_tokens, self.preprocessing.max_tokens, split_sentences=split_sentences
            )
        ]
        pieces, words = [], []
        for row, windows in sentences:
            first = windows[0].start  # the sentence's tokens, as the model reads them
            read = self._readable([t.text for t in tokens[row][first : windows[-1].end]])
            pieces += [(row, window) for window in windows]
            words += [read[w.start - first : w.end - first] for w in windows]
        emissions = self.scheduler.submit([self.encoder.encode(w) for w in words])
        decoded: dict[int, _DecodedWindow] = {}
        for batch in length_sorted_batches([len(w) for w in words], self.max_batch_size):
            windows = [pieces[i][1] for i in batch]
            results = self._decode(windows, [emissions[i] for i in batch])
            decoded.update(zip(batch, results, strict=True))
        in_order = iter(decoded[i] for i in range(len(pieces)))
        predictions = [NerPrediction(tokens=[], entities=[]) for _ in texts]
        for row, windows in sentences:
            # Sentences come in text order, so extending keeps each input's results in order.
            parts = [next(in_order) for _ in windows]
            sentence_tokens, entities = self._tag_sentence(texts[row], tokens[row], parts)
            predictions[row].tokens.extend(sentence_tokens)
            predictions[row].entities.extend(entities)
        return predictions

    def _readable(self, words: list[str]) -> list[str]:
        """A sentence's words, in their usual case if it is written in small letters only (the
        artifact's truecaser); the offsets and token texts of the answer stay the input's."""
        return words if self.truecaser is None else self.truecaser.restore_parts(words)

    def run_rows(self, features: Sequence[NerFeatures]) -> list[np.ndarray]:
        """Emission scores ``(tokens, tags)`` of each token sequence, run as one padded batch."""
        feeds = pad_ner_batch(features)
        emissions = self._emissions(feeds)
        return [emissions[row, :length] for row, length in enumerate(feeds["lengths"])]

    def _decode(
        self, windows: Sequence[Window], emissions: Sequence[np.ndarray]
    ) -> list[_DecodedWindow]:
        """CRF-decode a batch of windows (their emissions padded together)."""
        lengths = np.array([len(e) for e in emissions], dtype=np.int64)
        padded = np.zeros((len(emissions), int(lengths.max()), len(self.tags)), np.float64)
        for row, scores in enumerate(emissions):
            padded[row, : len(scores)] = scores
        paths = viterbi_decode(padded, lengths, self.crf)
        posterior = forward_backward(padded, lengths, self.crf)
        marginals = posterior.marginals()
        return [
            _DecodedWindow(
                window,
                path.tolist(),
                # exp of a log-probability can round to just above 1; a probability cannot.
                [min(float(marginals[index, t, k]), 1.0) for t, k in enumerate(path)],
                posterior,
                index,
            )
            for index, (window, path) in enumerate(zip(windows, paths, strict=True))
        ]

    def _tag_sentence(
        self, text: str, tokens: Sequence[Token], windows: Sequence[_DecodedWindow]
    ) -> tuple[list[NerToken], list[NerEntity]]:
        """The tokens and entities of one sentence, from the core tags of its windows stitched
        together (see the module docstring for the scores)."""
        path = [k for part in windows for k in part.path[part.core]]
        scores = [score for part in windows for score in part.scores[part.core]]
        offset = windows[0].window.core_start
        sentence = tokens[offset : windows[-1].window.core_end]
        tags = [self.tags[k] for k in path]
        tagged = [
            NerToken(tok.text, tok.start, tok.end, tag, score)
            for tok, tag, score in zip(sentence, tags, scores, strict=True)
        ]
        entities = []
        for kind, first, last in iob2_entities(tags):
            start, end = sentence[first].start, sentence[last - 1].end
            span = _span_probability(windows, offset + first, offset + last, path[first:last])
            # True in exact arithmetic within one window; the min keeps it true after rounding
            # and when the entity was scored in another window than some of its tokens.
            score = min(span, *scores[first:last])
            entities.append(NerEntity(kind, text[start:end], start, end, score))
        return tagged, entities

    def _emissions(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        emissions = self.session.run(feeds)[EMISSIONS]
        expected = (*feeds["word_ids"].shape, len(self.tags))
        if emissions.shape != expected:
            raise ArtifactError(
                f"the NER graph returned {EMISSIONS} of shape {emissions.shape}, "
                f"expected {expected}"
            )
        return emissions


def _given_tokens(words: Sequence[str]) -> list[Token]:
    """A pre-tokenized sentence's tokens, with offsets into its words joined by single spaces."""
    if any(not w for w in words):
        raise ValueError("tokens must not be empty strings")
    offsets = np.cumsum([0] + [len(w) + 1 for w in words])
    return [Token(w, int(s), int(s) + len(w)) for w, s in zip(words, offsets, strict=False)]


def _span_probability(
    windows: Sequence[_DecodedWindow], first: int, last: int, tags: Sequence[int]
) -> float:
    """The probability that tokens ``[first, last)`` carry ``tags``: in the window
    :func:`scoring_window` picks, or else the product over the cores it crosses of the
    probability of its tokens there, each in that core's window."""
    chosen = scoring_window([part.window for part in windows], first, last)
    if chosen is not None:
        return windows[chosen].span_probability(first, last, tags)
    probability = 1.0
    for part in windows:
        lo, hi = max(first, part.window.core_start), min(last, part.window.core_end)
        if lo < hi:
            probability *= part.span_probability(lo, hi, tags[lo - first : hi - first])
    return probability
