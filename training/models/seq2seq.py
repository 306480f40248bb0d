"""Attentional encoder-decoder: a bidirectional RNN encoder and an RNN decoder with Luong
(multiplicative, "general") attention and input feeding (Luong et al. 2015).

``encode()`` and ``decode_step()`` are exactly what the two exported graphs compute; the
teacher-forced ``forward()`` used in training loops over ``decode_step()``, so training and
serving run the same code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from training.models.rnn import length_mask, run_packed

DecoderState = tuple[
    torch.Tensor, torch.Tensor
]  # hidden (batch, hidden), input_feed (batch, hidden)
_MASKED = -1e9  # score of padded source positions: exp() underflows to exactly 0


class Seq2Seq(nn.Module):
    """Embedding -> packed biGRU/biLSTM encoder; GRU/LSTM-cell decoder with masked attention.

    With an LSTM decoder the cell state is carried alongside the hidden state, concatenated
    into ``hidden`` (batch, 2 * hidden_size), so that both cells export the same interface.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        *,
        embedding_dim: int = 256,
        encoder_hidden: int = 256,
        decoder_hidden: int = 512,
        cell: str = "gru",
        dropout: float = 0.3,
        embedding_dropout: float = 0.1,
        tie_embeddings: bool = True,
        pad_id: int = 0,
    ):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"unknown cell {cell!r}; choose gru or lstm")
        self.cell_type = cell
        self.decoder_hidden = decoder_hidden
        self.src_embedding = nn.Embedding(src_vocab, embedding_dim, padding_idx=pad_id)
        self.tgt_embedding = nn.Embedding(tgt_vocab, embedding_dim, padding_idx=pad_id)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.encoder = rnn(embedding_dim, encoder_hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * encoder_hidden, decoder_hidden)
        cell_type = nn.GRUCell if cell == "gru" else nn.LSTMCell
        self.decoder = cell_type(embedding_dim + decoder_hidden, decoder_hidden)
        self.attention_query = nn.Linear(decoder_hidden, 2 * encoder_hidden, bias=False)
        self.combine = nn.Linear(2 * encoder_hidden + decoder_hidden, decoder_hidden, bias=False)
        if tie_embeddings:
            # The output layer shares the target embeddings (Press & Wolf 2017): fewer
            # parameters (the artifact stays well under 40 MB) and better small-data quality.
            self.output_projection: nn.Module = nn.Linear(decoder_hidden, embedding_dim, bias=False)
            self.output = nn.Linear(embedding_dim, tgt_vocab)
            self.output.weight = self.tgt_embedding.weight
            nn.init.normal_(self.tgt_embedding.weight, std=embedding_dim**-0.5)
            with torch.no_grad():
                self.tgt_embedding.weight[pad_id].zero_()
        else:
            self.output_projection = nn.Identity()
            self.output = nn.Linear(decoder_hidden, tgt_vocab)
        self.dropout = nn.Dropout(dropout)
        self.embedding_dropout = nn.Dropout(embedding_dropout)

    def encode(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``src_ids (batch, src_len)``, ``src_lengths (batch,)`` ->
        ``encoder_states (batch, src_len, 2 * enc_hidden)``, initial ``hidden``
        ``(batch, state_size)``, ``input_feed (batch, dec_hidden)``, ``src_mask (batch, src_len)``
        (bool, true at real tokens). Padding is never read (packed sequences)."""
        embedded = self.embedding_dropout(self.src_embedding(src_ids))
        states = run_packed(self.encoder, embedded, src_lengths)
        mask = length_mask(src_lengths, src_ids.shape[1])
        mean = (states * mask.unsqueeze(-1)).sum(1) / src_lengths.unsqueeze(-1).to(states.dtype)
        hidden = torch.tanh(self.bridge(mean))
        if self.cell_type == "lstm":
            hidden = torch.cat([hidden, torch.zeros_like(hidden)], dim=-1)
        input_feed = torch.zeros_like(hidden[:, : self.decoder_hidden])
        return states, hidden, input_feed, mask

    def decode_step(
        self,
        prev_tokens: torch.Tensor,
        hidden: torch.Tensor,
        input_feed: torch.Tensor,
        encoder_states: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder step for ``prev_tokens (batch,)``.

        Returns ``logits (batch, vocab)``, ``hidden``, ``input_feed (batch, dec_hidden)`` (the
        attentional vector, fed to the next step) and ``attention (batch, src_len)``, zero at
        padding, each row summing to 1.
        """
        embedded = self.embedding_dropout(self.tgt_embedding(prev_tokens))
        feed, hidden, attention = self._attend(
            embedded, hidden, input_feed, encoder_states, src_mask
        )
        return self.generate(feed), hidden, feed, attention

    def _attend(
        self,
        embedded: torch.Tensor,
        hidden: torch.Tensor,
        input_feed: torch.Tensor,
        encoder_states: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The recurrent part of a step: ``(attentional (batch, dec_hidden), hidden,
        attention (batch, src_len))``."""
        cell_input = torch.cat([embedded, input_feed], dim=-1)
        if self.cell_type == "lstm":
            h, c = self.decoder(cell_input, tuple(hidden.chunk(2, dim=-1)))
            hidden, output = torch.cat([h, c], dim=-1), h
        else:
            hidden = output = self.decoder(cell_input, hidden)
        query = self.attention_query(output)  # (batch, 2 * enc_hidden)
        # Multiply-and-sum rather than bmm: PyTorch's CPU bmm of a matrix by a vector sums with
        # ~10x the float32 error of ONNX Runtime (and of a pairwise sum), which the sharp
        # attention softmax amplifies past the 1e-4 export tolerance.
        scores = (encoder_states * query.unsqueeze(1)).sum(-1)  # (batch, src_len)
        scores = scores.masked_fill(~src_mask, _MASKED)
        attention = torch.softmax(scores, dim=-1)
        context = (attention.unsqueeze(-1) * encoder_states).sum(1)  # (batch, 2 * enc_hidden)
        attentional = torch.tanh(self.combine(torch.cat([context, output], dim=-1)))
        return attentional, hidden, attention

    def generate(self, attentional: torch.Tensor) -> torch.Tensor:
        """Output logits ``(..., vocab)`` of attentional vectors ``(..., dec_hidden)``."""
        return self.output(self.output_projection(self.dropout(attentional)))

    def forward(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing: ``tgt_in (batch, tgt_len)`` (bos + target) -> attentional vectors
        ``(batch, tgt_len, dec_hidden)``; :meth:`generate` turns the ones that matter into
        logits (one large matrix product instead of one per step, padding skipped)."""
        states, hidden, feed, mask = self.encode(src_ids, src_lengths)
        embedded = self.embedding_dropout(self.tgt_embedding(tgt_in))
        outputs = []
        for t in range(tgt_in.shape[1]):
            feed, hidden, _ = self._attend(embedded[:, t], hidden, feed, states, mask)
            outputs.append(feed)
        return torch.stack(outputs, dim=1)


class EncoderGraph(nn.Module):
    """What the ``encoder`` ONNX graph computes."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor, src_lengths: torch.Tensor):
        return self.model.encode(src_ids, src_lengths)


class DecoderStepGraph(nn.Module):
    """What the ``decoder_step`` ONNX graph computes: log-probabilities, not logits."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, prev_tokens, hidden, input_feed, encoder_states, src_mask):
        logits, hidden, feed, attention = self.model.decode_step(
            prev_tokens, hidden, input_feed, encoder_states, src_mask
        )
        return F.log_softmax(logits, dim=-1), hidden, feed, attention
