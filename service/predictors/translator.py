"""Translation: text -> sentences -> source subwords -> ``encoder`` graph -> numpy greedy/beam
search over the ``decoder_step`` graph -> target subwords -> detokenized text (sentencepiece).

The model was trained on single sentences (Multi30k captions): given several at once, it drops
and mixes them up. So a text is split into sentences (the NER model's rule,
:func:`service.text.segment.split_sentences`), each is translated on its own, and the
translations are joined with the whitespace that separated the sentences. It was also trained on
sentence case only: a sentence in capitals, in title case or in small letters is read in the
case of the training text (the artifact's truecaser, :mod:`service.text.truecase`), and the
translation of a sentence in capitals is given in capitals. A request's sentences
are encoded into rows and handed to the predictor's ``scheduler``, which calls
:meth:`Translator.run_rows` on batches; there, rows with the same beam size are encoded
together and decoded together (``batch * beam`` rows per decoder step). The encoder reads
packed sequences and the attention is masked over padding, so a sentence translates the same
alone or in a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.predictors.budget import encode_within_budget
from service.predictors.decoding import (
    Hypothesis,
    State,
    StepFn,
    beam_search,
    greedy_search,
    max_lengths,
)
from service.runtime.batcher import InlineBatches, RowScheduler
from service.runtime.manifest import ArtifactError, Manifest
from service.runtime.session import OnnxSession
from service.text.constants import EOS_PIECE
from service.text.padding import pad_batch
from service.text.segment import split_sentences
from service.text.subword import NOTHING_TO_TRANSLATE, SubwordTokenizer, is_blank_char
from service.text.truecase import Casing, Truecaser, casing

logger = logging.getLogger(__name__)

# Tensor names of the two exported graphs (the export writes the same names).
SRC_IDS, SRC_LENGTHS = "src_ids", "src_lengths"
ENCODER_STATES, HIDDEN, INPUT_FEED, SRC_MASK = "encoder_states", "hidden", "input_feed", "src_mask"
PREV_TOKENS, LOG_PROBS, ATTENTION = "prev_tokens", "log_probs", "attention"
NEXT_HIDDEN, NEXT_INPUT_FEED = "next_hidden", "next_input_feed"
ENCODER_OUTPUTS = (ENCODER_STATES, HIDDEN, INPUT_FEED, SRC_MASK)
DECODER_INPUTS = (PREV_TOKENS, HIDDEN, INPUT_FEED, ENCODER_STATES, SRC_MASK)
DECODER_OUTPUTS = (LOG_PROBS, NEXT_HIDDEN, NEXT_INPUT_FEED, ATTENTION)

DEFAULT_MAX_BATCH_SIZE = 32


class TranslationPreprocessing(BaseModel):
    """``manifest.preprocessing`` of a translation model: subword files and decoding defaults."""

    model_config = ConfigDict(extra="forbid")

    source_model: str  # sentencepiece model file of the source language, in the artifact
    target_model: str
    # Truecaser table (JSON) for sentences not in sentence case; None: read as written.
    truecaser: str | None = None
    # Longer sources are cut (subwords, eos included) and flagged.
    max_source_tokens: int = Field(ge=2)
    beam_size: int = Field(5, ge=1)
    length_penalty: float = Field(1.0, ge=0)
    max_length_a: float = Field(1.5, ge=0)  # at most a * src_len + b target subwords (eos included)
    max_length_b: int = Field(10, ge=0)
    max_length: int = Field(200, ge=1)  # hard cap on target subwords


@dataclass(frozen=True, slots=True)
class TranslationAttention:
    """Attention of each target token (rows, eos included) over the source tokens (columns)."""

    source_tokens: list[str]
    target_tokens: list[str]
    weights: list[list[float]]  # (target tokens, source tokens); each row sums to 1


@dataclass(frozen=True, slots=True)
class TranslationPrediction:
    translation: str
    score: float  # average log-probability per target subword, eos included
    truncated: bool  # the source was cut to max_source_tokens
    attention: TranslationAttention | None = None


@dataclass(frozen=True, slots=True)
class TranslationRow:
    """One sentence to decode: source ids (eos included) and its decoding settings."""

    ids: list[int]
    beam_size: int
    max_length: int
    truncated: bool = False  # the source was cut to max_source_tokens
    capitals: bool = False  # the sentence is in capitals, and so is its translation

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class TranslationJob:
    """One text to translate: a row per sentence, and the whitespace between them."""

    rows: list[TranslationRow]
    gaps: list[str]


class Untranslatable(ValueError):
    """Texts with nothing to translate; ``problems`` holds ``(index, why)`` of each."""

    def __init__(self, problems: list[tuple[int, str]]):
        index, why = problems[0]
        super().__init__(f"text {index}: {why}")
        self.problems = problems


class Translator:
    """Translates texts with an ``encoder`` and a ``decoder_step`` graph."""

    task = "translation"
    # The search drops finished sentences from the batch, so mixed lengths cost little.
    min_batch_fill = 0.0
    max_request_tokens: int | None = None  # the registry sets MAX_REQUEST_TOKENS

    def __init__(
        self,
        encoder: OnnxSession,
        decoder_step: OnnxSession,
        source: SubwordTokenizer,
        target: SubwordTokenizer,
        preprocessing: TranslationPreprocessing,
        truecaser: Truecaser | None = None,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    ):
        self.encoder = encoder
        self.decoder_step = decoder_step
        self.source = source
        self.target = target
        self.preprocessing = preprocessing
        self.truecaser = truecaser
        self.scheduler: RowScheduler = InlineBatches(
            self.task, self.run_rows, max_batch_size, min_fill=self.min_batch_fill
        )

    @classmethod
    def from_artifact(
        cls, folder: Path, manifest: Manifest, sessions: Mapping[str, OnnxSession]
    ) -> Translator:
        """Build from a verified artifact folder with ``encoder`` and ``decoder_step`` graphs."""
        folder = Path(folder)
        if set(sessions) != {"encoder", "decoder_step"}:
            raise ArtifactError(
                f"{folder}: a translation model has graphs 'encoder' and 'decoder_step', "
                f"found {sorted(sessions)}"
            )
        _require_names(folder, "encoder", sessions["encoder"], (SRC_IDS, SRC_LENGTHS))
        _require_names(folder, "decoder_step", sessions["decoder_step"], DECODER_INPUTS)
        try:
            preprocessing = TranslationPreprocessing(**manifest.preprocessing)
        except ValidationError as exc:
            raise ArtifactError(f"{folder}: manifest.preprocessing is invalid: {exc}") from None
        source = SubwordTokenizer.from_file(
            manifest.listed_file(folder, preprocessing.source_model)
        )
        target = SubwordTokenizer.from_file(
            manifest.listed_file(folder, preprocessing.target_model)
        )
        truecaser = None
        if preprocessing.truecaser is not None:
            truecaser = Truecaser.from_json(manifest.listed_file(folder, preprocessing.truecaser))
        return cls(
            sessions["encoder"], sessions["decoder_step"], source, target, preprocessing, truecaser
        )

    def warm_up(self) -> None:
        """Translate one sentence, so a broken artifact fails at load, not on a request."""
        self.predict_batch(["A man is walking."], beam_size=2)

    def predict_batch(
        self,
        texts: Sequence[str],
        beam_size: int | None = None,
        max_length: int | None = None,
        return_attention: bool = False,
    ) -> list[TranslationPrediction]:
        """Translate ``texts`` (results in the same order), sentence by sentence.

        ``beam_size`` 1 is greedy decoding; ``max_length`` caps the target subwords of each
        sentence (eos included) on top of the model's ``a * src_len + b`` limit. Texts with
        nothing to translate (blank, or nothing left once normalized into subwords) raise
        :class:`Untranslatable`, naming every one.
        """
        _require_content([(i, all(map(is_blank_char, t))) for i, t in enumerate(texts)])
        counted = "source subwords and most target subwords, times beam_size"
        if return_attention:
            counted += ", plus the attention weights asked for"
        jobs = encode_within_budget(
            self.task,
            texts,
            lambda text: self.make_job(text, beam_size, max_length),
            lambda job: _tokens(job, return_attention),
            self.max_request_tokens,
            counted,
        )
        eos_alone = [all(len(row.ids) == 1 for row in job.rows) for job in jobs]
        _require_content(list(enumerate(eos_alone)))
        hypotheses = iter(self.scheduler.submit([row for job in jobs for row in job.rows]))
        return [
            self._prediction(job, [next(hypotheses) for _ in job.rows], return_attention)
            for job in jobs
        ]

    def make_job(
        self, text: str, beam_size: int | None = None, max_length: int | None = None
    ) -> TranslationJob:
        """The rows of ``text``'s sentences."""
        sentences, gaps = split_sentences(text)
        return TranslationJob([self.make_row(s, beam_size, max_length) for s in sentences], gaps)

    def make_row(
        self, text: str, beam_size: int | None = None, max_length: int | None = None
    ) -> TranslationRow:
        """The decoding job of one sentence: source ids (of the sentence in its usual case, cut
        to ``max_source_tokens``), beam size and maximum target length (the model's defaults
        where not given)."""
        settings = self.preprocessing
        beam = settings.beam_size if beam_size is None else beam_size
        cap = settings.max_length if max_length is None else min(max_length, settings.max_length)
        capitals = False
        if self.truecaser is not None:
            capitals = casing(text) is Casing.UPPER
            text = self.truecaser.restore(text)
        pieces = self.source.encode(text)
        ids = self.source.source_ids(pieces, settings.max_source_tokens)
        limit = max_lengths(np.array([len(ids)]), settings.max_length_a, settings.max_length_b, cap)
        truncated = len(pieces) + 1 > len(ids)
        return TranslationRow(ids, beam, int(limit[0]), truncated, capitals)

    def run_rows(self, rows: Sequence[TranslationRow]) -> list[Hypothesis]:
        """Decode a batch of rows; rows with the same beam size are decoded together."""
        results: list[Hypothesis | None] = [None] * len(rows)
        for beam in sorted({row.beam_size for row in rows}):
            group = [i for i, row in enumerate(rows) if row.beam_size == beam]
            hyps = self.decode(
                [rows[i].ids for i in group], beam, [rows[i].max_length for i in group]
            )
            for index, hyp in zip(group, hyps, strict=True):
                results[index] = hyp
        return results  # type: ignore[return-value]

    def decode(
        self, sources: Sequence[Sequence[int]], beam_size: int, limits: Sequence[int]
    ) -> list[Hypothesis]:
        """Greedy (``beam_size`` 1) or beam search for source id sequences, as one batch."""
        return self.search(self.encode(sources), self.step, beam_size, limits)

    def search(
        self, state: State, step: StepFn, beam_size: int, limits: Sequence[int]
    ) -> list[Hypothesis]:
        """Greedy (``beam_size`` 1) or beam search from encoder outputs ``state`` with any step
        function (the benchmarks run the same search over the PyTorch model)."""
        common = dict(bos_id=self.target.bos_id, eos_id=self.target.eos_id)
        if beam_size == 1:
            return greedy_search(step, state, max_lengths=np.asarray(limits), **common)
        return beam_search(
            step,
            state,
            beam_size=beam_size,
            max_lengths=np.asarray(limits),
            length_penalty=self.preprocessing.length_penalty,
            shared=(ENCODER_STATES, SRC_MASK),  # per sentence: every beam attends to the same
            **common,
        )

    def encode(self, sources: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """The decoder's initial state for source id sequences (one row each)."""
        ids, lengths = pad_batch(sources, pad_id=self.source.pad_id)
        outputs = self.encoder.run({SRC_IDS: ids, SRC_LENGTHS: lengths})
        return {name: outputs[name] for name in ENCODER_OUTPUTS}

    def step(self, prev_tokens: np.ndarray, state: State) -> tuple[np.ndarray, State, np.ndarray]:
        """One ``decoder_step`` call for ``(rows,)`` previous tokens (the search's step fn)."""
        feeds = {PREV_TOKENS: prev_tokens.astype(np.int64), **state}
        out = self.decoder_step.run(feeds)
        if np.isnan(out[LOG_PROBS]).any():  # no search can rank NaN scores
            raise ArtifactError(f"{self.decoder_step.path}: {LOG_PROBS} holds NaN")
        next_state = {
            HIDDEN: out[NEXT_HIDDEN],
            INPUT_FEED: out[NEXT_INPUT_FEED],
            ENCODER_STATES: state[ENCODER_STATES],
            SRC_MASK: state[SRC_MASK],
        }
        return out[LOG_PROBS], next_state, out[ATTENTION]

    def _prediction(
        self, job: TranslationJob, hyps: Sequence[Hypothesis], return_attention: bool
    ) -> TranslationPrediction:
        """The translations of a text's sentences, joined with the whitespace between them; the
        score is the average log-probability of all their subwords; the attention of several
        sentences is block-diagonal (a sentence's subwords attend to its own source only)."""
        parts = [self.target.decode(hyp.tokens) for hyp in hyps]
        parts = [p.upper() if r.capitals else p for r, p in zip(job.rows, parts, strict=True)]
        gaps = zip(job.gaps, parts[1:], strict=True)
        translation = parts[0] + "".join(gap + part for gap, part in gaps)
        steps = [len(hyp.attention) for hyp in hyps]  # target subwords, eos included
        if len(hyps) == 1:
            score = hyps[0].score
        else:
            score = sum(hyp.score * n for hyp, n in zip(hyps, steps, strict=True)) / sum(steps)
        attention = None
        if return_attention:
            sources = [len(row.ids) for row in job.rows]
            weights = np.zeros((sum(steps), sum(sources)))
            top = left = 0
            for hyp, rows, columns in zip(hyps, steps, sources, strict=True):
                weights[top : top + rows, left : left + columns] = hyp.attention[:, :columns]
                top, left = top + rows, left + columns
            attention = TranslationAttention(
                source_tokens=[p for row in job.rows for p in self.source.pieces(row.ids)],
                target_tokens=[
                    p for hyp in hyps for p in [*self.target.pieces(hyp.tokens), EOS_PIECE]
                ],
                weights=weights.tolist(),
            )
        return TranslationPrediction(
            translation=translation,
            score=score,
            truncated=any(row.truncated for row in job.rows),
            attention=attention,
        )


def _tokens(job: TranslationJob, attention: bool) -> int:
    """What a text costs against MAX_REQUEST_TOKENS: every beam of every sentence reads its
    source and may write up to ``max_length`` subwords; the attention returned has a weight per
    source and target subword of the whole text (block-diagonal, its zeros included: a text of
    many short sentences makes a large one)."""
    tokens = sum(row.beam_size * (len(row.ids) + row.max_length) for row in job.rows)
    if attention:
        tokens += sum(len(row.ids) for row in job.rows) * sum(r.max_length for r in job.rows)
    return tokens


def _require_names(folder: Path, graph: str, session: OnnxSession, inputs: Sequence[str]) -> None:
    if list(session.input_names) != list(inputs):
        raise ArtifactError(
            f"{folder}: graph {graph!r} must take {list(inputs)}, takes {session.input_names}"
        )


def _require_content(empty: Sequence[tuple[int, bool]]) -> None:
    """Raise :class:`Untranslatable` for the texts whose flag says they have nothing."""
    problems = [(index, NOTHING_TO_TRANSLATE) for index, nothing in empty if nothing]
    if problems:
        raise Untranslatable(problems)
