"""Recurrent building blocks shared by the models."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def make_rnn(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
) -> nn.RNNBase:
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(CELLS)}")
    return CELLS[cell](
        input_size,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=True,
        dropout=dropout if num_layers > 1 else 0.0,
    )


def run_packed(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run ``rnn`` over ``(batch, time, features)`` so that padding is never read.

    Packing makes a text's states independent of the other texts in its batch (the backward
    direction starts at the text's last real token, not at the end of the padding).
    Returns ``(batch, time, directions * hidden)`` with zeros at padded positions.
    """
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, _ = rnn(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.shape[1])
    return outputs


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(batch, max_len)`` boolean mask, true at real tokens."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
