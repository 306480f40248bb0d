"""Text -> word ids, the exact preprocessing a word-level model was trained with."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from service.text.tokenize import normalize_unicode, strip_markup, tokenize
from service.text.vocab import Vocab

# Tensor names of a word-level classifier graph (the sentiment model): the export writes them and
# the service looks them up, so they are defined once, here.
TOKEN_IDS = "token_ids"  # int64 (batch, tokens), padded with the vocabulary's pad id
LENGTHS = "lengths"  # int64 (batch,)
PROBABILITIES = "probabilities"  # float32 (batch, labels)

TYPOGRAPHIC_APOSTROPHE = "\u2019"


class WordEncoderConfig(BaseModel):
    """Preprocessing settings, saved in the manifest so the service rebuilds the same encoder."""

    model_config = ConfigDict(extra="forbid")

    lowercase: bool = True
    strip_markup: bool = True
    max_tokens: int = Field(400, ge=1)
    # Added later: models exported before have neither in their manifests and keep the
    # preprocessing they were trained with (both off); training turns both on.
    # Lower-case before tokenizing, so cased and lower-cased text split alike ("Mr." and "mr."):
    # the tokenizer's rules for abbreviations, initials and currencies look at capitals.
    lowercase_first: bool = False
    # Read the typographic apostrophe as ASCII (isn’t -> is n't), the form of the training text.
    fold_apostrophes: bool = False


@dataclass(frozen=True, slots=True)
class EncodedText:
    ids: list[int]
    tokens: list[str]
    truncated: bool


class WordEncoder:
    """Normalizes, tokenizes, looks up and truncates one text."""

    def __init__(self, vocab: Vocab, config: WordEncoderConfig):
        self.vocab = vocab
        self.config = config

    def words(self, text: str) -> list[str]:
        config = self.config
        if config.strip_markup:
            text = strip_markup(text)
        text = normalize_unicode(text)
        if config.fold_apostrophes:
            text = text.replace(TYPOGRAPHIC_APOSTROPHE, "'")
        if config.lowercase and config.lowercase_first:
            return [t.text for t in tokenize(text.lower())]
        words = [t.text for t in tokenize(text)]
        return [w.lower() for w in words] if config.lowercase else words

    def encode(self, text: str) -> EncodedText:
        """Encode a text; an empty result (no tokens) becomes one unknown token."""
        words = self.words(text)
        truncated = len(words) > self.config.max_tokens
        words = words[: self.config.max_tokens]
        ids = self.vocab.encode(words) or [self.vocab.unk_id]
        return EncodedText(ids=ids, tokens=words, truncated=truncated)
