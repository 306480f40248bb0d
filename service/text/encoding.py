"""Text -> word ids, the exact preprocessing a word-level model was trained with."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from service.text.tokenize import normalize_unicode, strip_markup, tokenize
from service.text.vocab import Vocab

# Tensor names of a word-level classifier graph (the sentiment model): the export writes them and
# the service looks them up, so they are defined once, here.
TOKEN_IDS = "token_ids"  # int64 (batch, tokens), padded with the vocabulary's pad id
LENGTHS = "lengths"  # int64 (batch,)
PROBABILITIES = "probabilities"  # float32 (batch, labels)


class WordEncoderConfig(BaseModel):
    """Preprocessing settings, saved in the manifest so the service rebuilds the same encoder."""

    model_config = ConfigDict(extra="forbid")

    lowercase: bool = True
    strip_markup: bool = True
    max_tokens: int = 400


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
        if self.config.strip_markup:
            text = strip_markup(text)
        words = [t.text for t in tokenize(normalize_unicode(text))]
        return [w.lower() for w in words] if self.config.lowercase else words

    def encode(self, text: str) -> EncodedText:
        """Encode a text; an empty result (no tokens) becomes one unknown token."""
        words = self.words(text)
        truncated = len(words) > self.config.max_tokens
        words = words[: self.config.max_tokens]
        ids = self.vocab.encode(words) or [self.vocab.unk_id]
        return EncodedText(ids=ids, tokens=words, truncated=truncated)
