"""BiLSTM-CNN-CRF tagger (Ma & Hovy 2016) with a casing embedding (Reimers & Gurevych 2017).

A word is represented by its (lower-cased) GloVe-initialised embedding, a learned embedding of
its casing class, and a character CNN with max-pooling over its characters. A bidirectional
LSTM over packed sentences turns these into per-token emission scores, and a CRF scores tag
sequences. Only :class:`NerEmissions` is exported to ONNX; the CRF's scores travel as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.models.crf import CRF, iob2_constraints
from training.models.rnn import length_mask, make_rnn, run_packed

# The character CNN uses tanh, whose outputs lie in [-1, 1]: filling padded character positions
# with -1 before max-pooling can never change the maximum over a word's real characters.
_CHAR_PAD_FILL = -1.0


class CharCNN(nn.Module):
    """``char_ids (batch, tokens, chars) -> (batch, tokens, filters)``.

    Padding characters (id 0) embed to zero, so the convolution at a real character sees the
    same zeros whether the batch pads to 5 or to 50 characters, and padded positions are
    excluded from the max-pool: a word gets the same features whatever it is batched with.
    """

    def __init__(
        self,
        num_chars: int,
        char_dim: int,
        filters: int,
        width: int,
        dropout: float,
        pad_id: int = 0,
    ):
        super().__init__()
        if width % 2 != 1:
            raise ValueError("the character CNN width must be odd (same-length convolution)")
        self.pad_id = pad_id
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=pad_id)
        bound = (3.0 / char_dim) ** 0.5  # Ma & Hovy's uniform initialisation
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv1d(char_dim, filters, width, padding=width // 2)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        batch, tokens, chars = char_ids.shape
        flat = char_ids.reshape(batch * tokens, chars)
        embedded = self.dropout(self.embedding(flat)).transpose(1, 2)  # (words, char_dim, chars)
        features = torch.tanh(self.conv(embedded))  # (words, filters, chars)
        real = (flat != self.pad_id).unsqueeze(1)  # (words, 1, chars)
        pooled = features.masked_fill(~real, _CHAR_PAD_FILL).max(dim=2).values
        return pooled.reshape(batch, tokens, -1)


class WordEmbedding(nn.Module):
    """``word_ids (batch, tokens) -> (batch, tokens, dim)`` with a learned and a fixed part.

    Ids below ``trainable`` (the special tokens and the training words, which come first in the
    vocabulary) index a learned table; the others (GloVe words never seen in training, which
    would get no gradient anyway) index a fixed buffer. Adam then updates ~1M numbers per step
    instead of 5M: on CPU this halves the time of a training step.
    """

    def __init__(self, vocab_size: int, dim: int, trainable: int, pad_id: int = 0):
        super().__init__()
        if not pad_id < trainable <= vocab_size:
            raise ValueError(f"trainable={trainable} must lie in ({pad_id}, {vocab_size}]")
        self.trainable = trainable
        self.fixed_count = vocab_size - trainable  # a Python int: the split is fixed at export
        self.learned = nn.Embedding(trainable, dim, padding_idx=pad_id)
        self.register_buffer("fixed", torch.zeros(vocab_size - trainable, dim))

    def load_vectors(self, vectors: torch.Tensor) -> None:
        """Initialise both parts from a ``(vocab_size, dim)`` matrix (e.g. GloVe rows)."""
        with torch.no_grad():
            self.learned.weight.copy_(vectors[: self.trainable])
            self.fixed.copy_(vectors[self.trainable :])

    def forward(self, word_ids: torch.Tensor) -> torch.Tensor:
        learned = self.learned(word_ids.clamp(max=self.trainable - 1))
        if self.fixed_count == 0:
            return learned
        fixed = F.embedding((word_ids - self.trainable).clamp(min=0), self.fixed)
        return torch.where((word_ids < self.trainable).unsqueeze(-1), learned, fixed)


class NerEmissions(nn.Module):
    """``(word_ids, case_ids (batch, tokens), char_ids (batch, tokens, chars), lengths (batch,))
    -> emissions (batch, tokens, tags)``; the exported graph.

    ``trainable_words``: how many vocabulary entries (from the start) are fine-tuned; the rest
    keep their initial vectors. ``None``: all.
    """

    def __init__(
        self,
        vocab_size: int,
        num_chars: int,
        num_cases: int,
        num_tags: int,
        *,
        word_dim: int = 50,
        case_dim: int = 10,
        char_dim: int = 25,
        char_filters: int = 30,
        char_width: int = 3,
        char_dropout: float = 0.25,
        embedding_dropout: float = 0.5,
        hidden_size: int = 200,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.5,
        trainable_words: int | None = None,
        pad_id: int = 0,
    ):
        super().__init__()
        self.words = WordEmbedding(vocab_size, word_dim, trainable_words or vocab_size, pad_id)
        self.cases = nn.Embedding(num_cases, case_dim, padding_idx=pad_id)
        self.chars = CharCNN(num_chars, char_dim, char_filters, char_width, char_dropout, pad_id)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.rnn = make_rnn(
            cell, word_dim + case_dim + char_filters, hidden_size, num_layers, True, dropout
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(2 * hidden_size, num_tags)

    def forward(
        self,
        word_ids: torch.Tensor,
        case_ids: torch.Tensor,
        char_ids: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        words = torch.cat(
            [self.words(word_ids), self.cases(case_ids), self.chars(char_ids)], dim=-1
        )
        states = run_packed(
            self.rnn, self.embedding_dropout(words), lengths
        )  # (batch, tokens, 2*hidden)
        return self.output(self.dropout(states))


class NerTagger(nn.Module):
    """Emission network + CRF: :meth:`loss` for training, :meth:`decode` for tags."""

    def __init__(
        self, emissions: NerEmissions, tags: Sequence[str], *, constrain_transitions: bool = True
    ):
        super().__init__()
        self.emissions = emissions
        self.crf = CRF(len(tags), iob2_constraints(tags) if constrain_transitions else None)

    def forward(
        self,
        word_ids: torch.Tensor,
        case_ids: torch.Tensor,
        char_ids: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Emission scores ``(batch, tokens, tags)``."""
        return self.emissions(word_ids, case_ids, char_ids, lengths)

    def loss(self, inputs: Sequence[torch.Tensor], tags: torch.Tensor) -> torch.Tensor:
        """CRF negative log-likelihood of gold ``tags (batch, tokens)``, mean over sentences."""
        lengths = inputs[-1]
        mask = length_mask(lengths, tags.shape[1])
        return self.crf.nll(self(*inputs), tags, mask)

    def decode(self, inputs: Sequence[torch.Tensor]) -> list[list[int]]:
        """Viterbi tag ids of each sentence."""
        lengths = inputs[-1]
        emissions = self(*inputs)
        return self.crf.decode(emissions, length_mask(lengths, emissions.shape[1]))
