"""Sentencepiece subword tokenization shared by training and serving.

The same ``.model`` file (trained on the raw, cased training text and shipped inside the
artifact) turns text into piece ids before the encoder and turns the decoder's ids back into
natural, detokenized text. Ids 0-3 are reserved: pad, unk, bos (``<s>``), eos (``</s>``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from service.text.constants import (
    EOS_PIECE,
    SUBWORD_BOS_ID,
    SUBWORD_EOS_ID,
    SUBWORD_PAD_ID,
    SUBWORD_UNK_ID,
)

NOTHING_TO_TRANSLATE = (
    "text has nothing to translate after normalization (only whitespace, control or format "
    "characters, or U+2581 / U+FFFD)"
)

# Dropped by sentencepiece's normalization: its word-start mark and the replacement character.
_DROPPED_BY_SUBWORDS = frozenset("\u2581\ufffd")


def is_blank_char(char: str) -> bool:
    """Whitespace, a control or format character (Unicode categories Cc and Cf: NUL, ESC,
    zero-width space, byte order mark...) or one the subword models drop: a text of nothing
    else has nothing to translate, whatever the model."""
    return (
        char.isspace() or unicodedata.category(char) in ("Cc", "Cf") or char in _DROPPED_BY_SUBWORDS
    )


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace (tabs, newlines) into single spaces; strip the ends.

    Applied before training and before encoding, so a stray TAB (Multi30k ``train.de`` has one)
    is read the same way everywhere.
    """
    return " ".join(text.split())


class SubwordTokenizer:
    """A loaded sentencepiece model: text <-> piece ids, with the reserved special ids."""

    pad_id = SUBWORD_PAD_ID
    unk_id = SUBWORD_UNK_ID
    bos_id = SUBWORD_BOS_ID
    eos_id = SUBWORD_EOS_ID

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(self.model_proto)
        reserved = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if reserved != (self.pad_id, self.unk_id, self.bos_id, self.eos_id):
            raise ValueError(f"sentencepiece model reserves ids {reserved}, expected (0, 1, 2, 3)")

    @classmethod
    def from_file(cls, path: Path) -> SubwordTokenizer:
        return cls(Path(path).read_bytes())

    @classmethod
    def train(cls, lines: Iterable[str], vocab_size: int, model_type: str = "unigram"):
        """Train on raw lines (whitespace-normalized here); returns the loaded tokenizer."""
        import io

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=(normalize_whitespace(line) for line in lines),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            pad_id=SUBWORD_PAD_ID,
            unk_id=SUBWORD_UNK_ID,
            bos_id=SUBWORD_BOS_ID,
            eos_id=SUBWORD_EOS_ID,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
        return cls(model.getvalue())

    def save(self, path: Path) -> Path:
        Path(path).write_bytes(self.model_proto)
        return Path(path)

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text`` (no bos/eos)."""
        return self._sp.encode(normalize_whitespace(text), out_type=int)

    def encode_source(self, text: str, max_tokens: int | None = None) -> list[int]:
        """Encoder input: piece ids, cut to ``max_tokens - 1``, then ``</s>``."""
        return self.source_ids(self.encode(text), max_tokens)

    def source_ids(self, ids: Sequence[int], max_tokens: int | None = None) -> list[int]:
        """Encoder input from the piece ids of a text (see :meth:`encode_source`)."""
        if max_tokens is not None:
            ids = ids[: max_tokens - 1]
        return [*ids, self.eos_id]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The piece strings of ``ids`` (``▁`` marks a word start; eos is ``</s>``)."""
        return [EOS_PIECE if i == self.eos_id else self._sp.id_to_piece(int(i)) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenized text of ``ids``; special ids are dropped."""
        return self._sp.decode([int(i) for i in ids if i > self.eos_id])
