"""Padding of id sequences into rectangular batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pad id sequences to the longest one.

    Returns ``ids`` of shape ``(batch, max_len)`` and ``lengths`` of shape ``(batch,)``, both
    int64. Every sequence must hold at least one id (RNNs cannot run over an empty input).
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if len(lengths) == 0 or lengths.min() < 1:
        raise ValueError("pad_batch needs a non-empty list of non-empty sequences")
    ids = np.full((len(sequences), int(lengths.max())), pad_id, dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
    return ids, lengths
