"""Greedy and beam search in numpy over a one-step decoder function.

The decoder graph computes one step; the loops live here, so they can be tested with stub step
functions and shared by the service (ONNX Runtime steps) and training (PyTorch steps).

A *step function* takes the previous tokens ``(rows,)`` and a state (a dict of arrays whose
first axis is the row) and returns ``log_probs (rows, vocab)``, the next state and the
attention ``(rows, src_len)`` of the step. Many sentences decode at once: with beam size ``k``
the step sees ``batch * k`` rows, sentence ``b``'s beams being rows ``b*k .. b*k+k-1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

State = Mapping[str, np.ndarray]
StepFn = Callable[[np.ndarray, State], tuple[np.ndarray, State, np.ndarray]]


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """A finished translation of one sentence.

    ``tokens`` exclude bos and eos; ``score`` is the average log-probability per generated
    token, eos included; ``attention`` has one row per generated token, eos included:
    ``(len(tokens) + 1, src_len)``.
    """

    tokens: list[int]
    score: float
    attention: np.ndarray


def max_lengths(
    src_lengths: np.ndarray, a: float = 1.5, b: int = 10, cap: int | None = None
) -> np.ndarray:
    """Most tokens to generate (eos included) per sentence: ``a * src_len + b``, at most ``cap``."""
    lengths = np.floor(a * np.asarray(src_lengths, dtype=np.float64) + b).astype(np.int64)
    if cap is not None:
        lengths = np.minimum(lengths, cap)
    return np.maximum(lengths, 1)


def _select_rows(state: State, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: value[rows] for name, value in state.items()}


def _force_eos(log_probs: np.ndarray, last: np.ndarray, eos_id: int) -> np.ndarray:
    """Only eos is possible on rows whose sentence reached its maximum length."""
    if last.any():
        log_probs = log_probs.copy()
        eos = log_probs[last, eos_id]
        log_probs[last] = -np.inf
        log_probs[last, eos_id] = eos
    return log_probs


def greedy_search(
    step: StepFn,
    state: State,
    *,
    bos_id: int,
    eos_id: int,
    max_lengths: np.ndarray,
) -> list[Hypothesis]:
    """The most probable next token at every step, for all sentences at once.

    ``state`` has one row per sentence; ``max_lengths (batch,)`` bounds the generated tokens
    (eos included): at the last step only eos is allowed.
    """
    limits = np.asarray(max_lengths, dtype=np.int64)
    batch = len(limits)
    prev = np.full(batch, bos_id, dtype=np.int64)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    attention: list[list[np.ndarray]] = [[] for _ in range(batch)]
    totals = np.zeros(batch)
    done = np.zeros(batch, dtype=bool)
    for t in range(int(limits.max(initial=0))):
        log_probs, state, attn = step(prev, state)
        log_probs = _force_eos(np.asarray(log_probs, dtype=np.float64), t + 1 >= limits, eos_id)
        best = log_probs.argmax(axis=1)
        for b in np.flatnonzero(~done):
            totals[b] += log_probs[b, best[b]]
            attention[b].append(np.asarray(attn[b]))
            if best[b] == eos_id:
                done[b] = True
            else:
                tokens[b].append(int(best[b]))
        if done.all():
            break
        prev = best.astype(np.int64)
    return [
        Hypothesis(tokens[b], float(totals[b] / len(attention[b])), np.stack(attention[b]))
        for b in range(batch)
    ]


def beam_search(
    step: StepFn,
    state: State,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_lengths: np.ndarray,
    length_penalty: float = 1.0,
) -> list[Hypothesis]:
    """Beam search for all sentences at once (``batch * beam_size`` rows per step).

    Finished hypotheses are ranked by ``sum log p / length ** length_penalty`` (length counts
    eos; 0 turns normalization off, 1 ranks by the average log-probability). A sentence stops
    when ``beam_size`` hypotheses have ended, or at its maximum length, where only eos is
    allowed; the search stops when every sentence has. ``state`` has one row per sentence.
    """
    limits = np.asarray(max_lengths, dtype=np.int64)
    batch, k = len(limits), beam_size
    if k < 1:
        raise ValueError(f"beam_size must be at least 1, got {k}")
    state = _select_rows(state, np.repeat(np.arange(batch), k))
    prev = np.full(batch * k, bos_id, dtype=np.int64)
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    history = np.zeros((batch * k, 0), dtype=np.int64)
    attn_history: np.ndarray | None = None
    finished: list[list[tuple[float, float, list[int], np.ndarray]]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)

    for t in range(int(limits.max(initial=0))):
        log_probs, state, attn = step(prev, state)
        attn = np.asarray(attn)
        vocab = log_probs.shape[1]
        last = np.repeat(t + 1 >= limits, k)
        log_probs = _force_eos(np.asarray(log_probs, dtype=np.float64), last, eos_id)
        candidates = (scores[:, :, None] + log_probs.reshape(batch, k, vocab)).reshape(batch, -1)
        n = min(2 * k, candidates.shape[1])
        top = np.argpartition(-candidates, n - 1, axis=1)[:, :n]

        source_rows = np.arange(batch * k)
        next_tokens = np.full(batch * k, eos_id, dtype=np.int64)
        next_scores = np.full((batch, k), -np.inf)
        for b in np.flatnonzero(~done):
            order = top[b][np.lexsort((top[b], -candidates[b, top[b]]))]
            alive = 0
            for flat in order:
                value = candidates[b, flat]
                if value == -np.inf:
                    break
                beam, token = divmod(int(flat), vocab)
                row = b * k + beam
                if token == eos_id:
                    rows_attn = attn[row][None]
                    if attn_history is not None:
                        rows_attn = np.concatenate([attn_history[row], rows_attn])
                    length = t + 1
                    finished[b].append(
                        (value / length**length_penalty, value, history[row].tolist(), rows_attn)
                    )
                else:
                    source_rows[b * k + alive] = row
                    next_tokens[b * k + alive] = token
                    next_scores[b, alive] = value
                    alive += 1
                    if alive == k:
                        break
            if len(finished[b]) >= k or alive == 0:
                done[b] = True
        if done.all():
            break
        state = _select_rows(state, source_rows)
        history = np.concatenate([history[source_rows], next_tokens[:, None]], axis=1)
        step_attn = attn[source_rows][:, None, :]
        attn_history = (
            step_attn
            if attn_history is None
            else np.concatenate([attn_history[source_rows], step_attn], axis=1)
        )
        prev, scores = next_tokens, next_scores

    results = []
    for b in range(batch):
        best = max(finished[b], key=lambda f: f[0])  # first of equals: the earlier one
        _, total, tokens, rows_attn = best
        results.append(Hypothesis(tokens, float(total / len(rows_attn)), rows_attn))
    return results
