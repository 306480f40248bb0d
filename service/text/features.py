"""Token features of the NER model: word ids, a casing class and character ids.

Training and the service both build the NER graph's inputs with :class:`NerEncoder` and
:func:`pad_ner_batch`, so the two cannot disagree on lower-casing, the casing classes, how long
words are cut or how batches are padded.

Words are looked up lower-cased (GloVe 6B is lower-cased), so capitalisation reaches the model
through the casing class and the characters, which keep their case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.text.padding import pad_batch
from service.text.tokenize import normalize_unicode
from service.text.vocab import Vocab

# Casing classes (Reimers & Gurevych 2017, plus punctuation). Id 0 is padding.
CASE_FEATURES: tuple[str, ...] = (
    "<pad>",
    "numeric",  # 1996, 22
    "mostly_numeric",  # 1996-08-22, 3:1, 1990s (more than half digits)
    "lower",  # every cased character lower: rejects, u.s.
    "upper",  # every cased character upper: EU, U.S., A4
    "initial_upper",  # first character upper: German, McDonald, Jean-Claude
    "has_digit",  # some digits, other casing: iPhone4, mRNA2
    "punctuation",  # no letter, no digit: . , ( --
    "other",  # iPhone, 東京 (no letter case)
)
_CASE_ID = {name: index for index, name in enumerate(CASE_FEATURES)}

# Names of the NER graph's tensors (the export writes the same names).
WORD_IDS = "word_ids"
CASE_IDS = "case_ids"
CHAR_IDS = "char_ids"
LENGTHS = "lengths"
EMISSIONS = "emissions"
NER_INPUT_NAMES: tuple[str, ...] = (WORD_IDS, CASE_IDS, CHAR_IDS, LENGTHS)


def case_feature(token: str) -> int:
    """The casing class of ``token`` as an index into :data:`CASE_FEATURES` (never 0)."""
    if not token:
        raise ValueError("a token must not be empty")
    digits = sum(c.isdigit() for c in token)
    if digits == len(token):
        name = "numeric"
    elif digits / len(token) > 0.5:
        name = "mostly_numeric"
    elif token.islower():
        name = "lower"
    elif token.isupper():
        name = "upper"
    elif token[0].isupper():
        name = "initial_upper"
    elif digits:
        name = "has_digit"
    elif not any(c.isalnum() for c in token):
        name = "punctuation"
    else:
        name = "other"
    return _CASE_ID[name]


class NerPreprocessing(BaseModel):
    """How text becomes NER model inputs; saved as the manifest's ``preprocessing``."""

    model_config = ConfigDict(extra="forbid")

    lowercase_words: bool = Field(True, description="words are looked up lower-cased")
    max_word_chars: int = Field(
        30, ge=1, description="a word's first max_word_chars characters feed the char encoder"
    )
    max_tokens: int = Field(
        150, ge=1, description="the longest token sequence run at once; longer ones are windowed"
    )
    split_sentences: bool = Field(
        True, description="raw texts are split into sentences before windowing"
    )
    truecaser: str | None = Field(
        None,
        description="truecaser table (JSON) for sentences in small letters only; None: every "
        "sentence is read as written",
    )
    case_features: list[str] = Field(
        default_factory=lambda: list(CASE_FEATURES),
        description="the casing classes in id order (checked against this code's)",
    )

    @field_validator("case_features")
    @classmethod
    def _same_case_classes(cls, value: list[str]) -> list[str]:
        if tuple(value) != CASE_FEATURES:
            raise ValueError(
                f"the model was trained with casing classes {value}, this code computes "
                f"{list(CASE_FEATURES)}"
            )
        return value


@dataclass(frozen=True, slots=True)
class NerFeatures:
    """The inputs of one token sequence: one entry per token."""

    word_ids: list[int]
    case_ids: list[int]
    char_ids: list[list[int]]  # each of length 1..max_word_chars

    def __len__(self) -> int:
        return len(self.word_ids)


class NerEncoder:
    """Tokens -> :class:`NerFeatures` with a word and a character vocabulary."""

    def __init__(self, words: Vocab, chars: Vocab, config: NerPreprocessing):
        self.words = words
        self.chars = chars
        self.config = config

    def word_key(self, token: str) -> str:
        """The form under which ``token`` is looked up in the word vocabulary."""
        return token.lower() if self.config.lowercase_words else token

    def char_ids(self, token: str) -> list[int]:
        """Character ids of the token's first ``max_word_chars`` characters (unknown -> unk)."""
        if not token:
            raise ValueError("a token must not be empty")
        return self.chars.encode(token[: self.config.max_word_chars])

    def encode(self, tokens: Sequence[str]) -> NerFeatures:
        """Features of a non-empty token sequence (looked up in Unicode NFC)."""
        if not tokens:
            raise ValueError("cannot encode an empty token sequence")
        tokens = [normalize_unicode(t) for t in tokens]
        return NerFeatures(
            word_ids=self.words.encode(self.word_key(t) for t in tokens),
            case_ids=[case_feature(t) for t in tokens],
            char_ids=[self.char_ids(t) for t in tokens],
        )


def pad_ner_batch(batch: Sequence[NerFeatures]) -> dict[str, np.ndarray]:
    """Pad sequences into the graph's int64 inputs, keyed by tensor name.

    ``word_ids`` and ``case_ids`` are ``(batch, tokens)``, ``char_ids`` is
    ``(batch, tokens, chars)`` and ``lengths`` is ``(batch,)``. Padding is id 0 everywhere (a
    padded token has only padding characters; a real token has at least one real character).
    """
    word_ids, lengths = pad_batch([f.word_ids for f in batch])
    case_ids, _ = pad_batch([f.case_ids for f in batch])
    max_chars = max(len(chars) for f in batch for chars in f.char_ids)
    char_ids = np.zeros((len(batch), word_ids.shape[1], max_chars), dtype=np.int64)
    for row, features in enumerate(batch):
        for column, chars in enumerate(features.char_ids):
            char_ids[row, column, : len(chars)] = chars
    return {WORD_IDS: word_ids, CASE_IDS: case_ids, CHAR_IDS: char_ids, LENGTHS: lengths}
