"""Text classifier: embedding -> (bi)RNN over packed sequences -> pooling -> linear."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.models.rnn import length_mask, make_rnn, run_packed

POOLINGS = ("max", "mean", "max_mean")


class SentimentClassifier(nn.Module):
    """Scores a batch of texts.

    ``forward(token_ids (batch, time), lengths (batch,)) -> logits (batch, num_classes)``.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        *,
        embedding_dim: int = 50,
        hidden_size: int = 150,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.5,
        embedding_dropout: float = 0.3,
        pooling: str = "max_mean",
        freeze_embeddings: bool = False,
        pad_id: int = 0,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.rnn = make_rnn(cell, embedding_dim, hidden_size, num_layers, bidirectional, dropout)
        features = hidden_size * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(features * (2 if pooling == "max_mean" else 1), num_classes)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(token_ids), lengths)

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """The word vectors the RNN reads: (batch, time) -> (batch, time, embedding_dim)."""
        return self.embedding_dropout(self.embedding(token_ids))

    def classify(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits from :meth:`embed`'s vectors (perturbed ones, in adversarial training)."""
        states = run_packed(self.rnn, embedded, lengths)  # (batch, time, features)
        pooled = self._pool(states, lengths)
        return self.output(self.dropout(pooled))

    def _pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = length_mask(lengths, states.shape[1]).unsqueeze(-1)  # (batch, time, 1)
        parts = []
        if self.pooling in ("max", "max_mean"):
            parts.append(states.masked_fill(~mask, float("-inf")).max(dim=1).values)
        if self.pooling in ("mean", "max_mean"):
            parts.append(states.sum(dim=1) / lengths.unsqueeze(-1).to(states.dtype))
        return torch.cat(parts, dim=-1)


class ProbabilityHead(nn.Module):
    """Wraps a classifier so the exported graph outputs probabilities."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(token_ids, lengths), dim=-1)


class BidirectionalLanguageModel(nn.Module):
    """Pre-trains a classifier's embedding and bidirectional RNN on unlabelled text.

    The forward direction's state at each token predicts the next token and the backward
    direction's state the previous one (a biLM as in ELMo), each through its own adaptive
    softmax. ``forward(token_ids, lengths) -> mean negative log-likelihood per predicted token``.
    The classifier's output layer is not used; ``classifier.state_dict()`` is what a
    classification run starts from.
    """

    def __init__(
        self,
        classifier: SentimentClassifier,
        vocab_size: int,
        cutoffs: Sequence[int] = (500, 5000),
        div_value: float = 4.0,
    ):
        super().__init__()
        if not classifier.rnn.bidirectional:
            raise ValueError("language-model pre-training needs a bidirectional RNN")
        if classifier.rnn.num_layers > 1:  # see training.config.SentimentConfig
            raise ValueError(
                "language-model pre-training needs a one-layer RNN: in a deeper bidirectional "
                "RNN each direction's upper layers see the tokens it predicts"
            )
        self.classifier = classifier
        hidden = classifier.rnn.hidden_size
        # Bands must lie inside the vocabulary; a small one (a dry run) gets a single split.
        bands = sorted(c for c in set(cutoffs) if 0 < c < vocab_size - 1) or [vocab_size // 2]
        self.next_token = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab_size, bands, div_value)
        self.previous_token = nn.AdaptiveLogSoftmaxWithLoss(hidden, vocab_size, bands, div_value)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        encoder = self.classifier
        embedded = encoder.embedding_dropout(encoder.embedding(token_ids))
        states = encoder.dropout(run_packed(encoder.rnn, embedded, lengths))
        hidden = encoder.rnn.hidden_size
        # Pairs (t, t + 1) inside a text: forward state at t -> token t + 1, backward state at
        # t + 1 -> token t.
        pairs = length_mask(lengths - 1, token_ids.shape[1] - 1)
        forward = self.next_token(states[:, :-1, :hidden][pairs], token_ids[:, 1:][pairs])
        backward = self.previous_token(states[:, 1:, hidden:][pairs], token_ids[:, :-1][pairs])
        return (forward.loss + backward.loss) / 2
