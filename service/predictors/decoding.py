"""Greedy and beam search in numpy over a one-step decoder function.

The decoder graph computes one step; the loops live here, so they can be tested with stub step
functions and shared by the service (ONNX Runtime steps) and training (PyTorch steps).

A *step function* takes the previous tokens ``(rows,)`` and a state (a dict of arrays whose
first axis is the row) and returns ``log_probs (rows, vocab)``, the next state and the
attention ``(rows, src_len)`` of the step. Many sentences decode at once: with beam size ``k``
the step sees ``batch * k`` rows, sentence ``b``'s beams being rows ``b*k .. b*k+k-1``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
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


def _next_beams(
    state: State, beams: np.ndarray, kept: np.ndarray | None, shared: Collection[str]
) -> dict[str, np.ndarray]:
    """The state of the next step's rows: row ``i`` continues row ``beams[i]``. ``shared``
    entries are the same for every beam of a sentence, so they follow the sentences, not the
    beams: they are gathered (by ``kept``, the rows of the sentences still decoding) only when a
    sentence has left the batch (``kept`` is None when none has)."""
    return {
        name: (value if kept is None else value[kept]) if name in shared else value[beams]
        for name, value in state.items()
    }


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
    (eos included): at the last step only eos is allowed. A sentence that has ended leaves the
    batch, so later steps run only the sentences still decoding.
    """
    limits = np.asarray(max_lengths, dtype=np.int64)
    batch = len(limits)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    attention: list[list[np.ndarray]] = [[] for _ in range(batch)]
    totals = np.zeros(batch)
    active = np.arange(batch)  # the sentences still decoding, in state row order
    prev = np.full(batch, bos_id, dtype=np.int64)
    for t in range(int(limits.max(initial=0))):
        log_probs, state, attn = step(prev, state)
        log_probs = _force_eos(np.asarray(log_probs), t + 1 >= limits[active], eos_id)
        best = log_probs.argmax(axis=1)
        ended = best == eos_id
        for row, b in enumerate(active):
            totals[b] += log_probs[row, best[row]]
            attention[b].append(np.asarray(attn[row]))
            if not ended[row]:
                tokens[b].append(int(best[row]))
        if ended.all():
            break
        if ended.any():
            keep = np.flatnonzero(~ended)
            active, state, best = active[keep], _select_rows(state, keep), best[keep]
        prev = best.astype(np.int64)
    return [
        Hypothesis(tokens[b], float(totals[b] / len(attention[b])), np.stack(attention[b]))
        for b in range(batch)
    ]


# Candidates are found from a sample of every SAMPLE_STRIDE-th token of each row: the ``n``-th
# best of the sample is a floor no higher than the row's ``n``-th best, so only the few tokens at
# or above it need scoring and sorting, not the whole vocabulary of every row (selecting over
# all of it took as long as the decoder graph itself at 32 sentences x 5 beams).
SAMPLE_STRIDE = 8


def _top_candidates(
    scores: np.ndarray, log_probs: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best flat candidates (``beam * vocab + token``) of each sentence and their
    scores, both ``(sentences, n)``, best first (equal scores: the smaller flat index first),
    from beam ``scores (sentences, k)`` and ``log_probs (sentences * k, vocab)``. A sentence
    with fewer than ``n`` finite candidates has ``-inf`` after them.

    Each row has at least ``n`` tokens at or above its floor (see ``SAMPLE_STRIDE``), so a
    sentence's ``n`` best extensions all score at least as much as its best beam's score plus
    that beam's floor: only tokens above both bounds are sorted. That is exact for a search's
    scores, sums of log-probabilities; a score so large (about 1e8) that adding it merges
    float32 values just below and at a floor, or a NaN, could cost a tie or a candidate.
    """
    sentences, k = scores.shape
    vocab = log_probs.shape[1]
    n = min(n, vocab)
    sample = log_probs[:, ::SAMPLE_STRIDE] if vocab >= n * SAMPLE_STRIDE else log_probs
    floor = np.partition(sample, sample.shape[1] - n, axis=1)[:, sample.shape[1] - n]
    beam_scores = scores.reshape(-1)
    bar = np.max((beam_scores + floor).reshape(sentences, k), axis=1)
    index = np.flatnonzero((log_probs >= floor[:, None]) & (log_probs > -np.inf))
    row, token = np.divmod(index, vocab)
    values = beam_scores[row] + log_probs[row, token]  # the same sums as ``bar``'s
    sentence = row // k
    kept = values >= bar[sentence]
    sentence, values = sentence[kept], values[kept]
    flat = row[kept] % k * vocab + token[kept]
    order = np.lexsort((flat, -values, sentence))
    sentence, flat, values = sentence[order], flat[order], values[order]
    rank = np.arange(len(order)) - np.searchsorted(sentence, sentence)  # place in its sentence
    best = rank < n
    top_flat = np.zeros((sentences, n), dtype=np.int64)
    top_values = np.full((sentences, n), -np.inf)
    top_flat[sentence[best], rank[best]] = flat[best]
    top_values[sentence[best], rank[best]] = values[best]
    return top_flat, top_values


def beam_search(
    step: StepFn,
    state: State,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    max_lengths: np.ndarray,
    length_penalty: float = 1.0,
    shared: Collection[str] = (),
) -> list[Hypothesis]:
    """Beam search for all sentences at once (``sentences * beam_size`` rows per step).

    Finished hypotheses are ranked by ``sum log p / length ** length_penalty`` (length counts
    eos; 0 turns normalization off, 1 ranks by the average log-probability). A sentence stops
    when ``beam_size`` hypotheses have ended, or at its maximum length, where only eos is
    allowed; it then leaves the batch, and the search stops when every sentence has. ``state``
    has one row per sentence.

    ``shared`` names state entries that the step function returns unchanged (the encoder's
    states and source mask): all beams of a sentence hold the same rows of them, so they are not
    reordered with the beams at every step (a copy of ``rows * src_len`` states per step), only
    cut when sentences leave.
    """
    limits = np.asarray(max_lengths, dtype=np.int64)
    batch, k = len(limits), beam_size
    if k < 1:
        raise ValueError(f"beam_size must be at least 1, got {k}")
    active = np.arange(batch)  # sentences still decoding; sentence active[i] owns rows i*k..
    state = _select_rows(state, np.repeat(active, k))
    prev = np.full(batch * k, bos_id, dtype=np.int64)
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    history = np.zeros((batch * k, 0), dtype=np.int64)
    attn_steps: list[np.ndarray] = []  # per step: (rows, src_len) of that step's beams
    parents: list[np.ndarray] = []  # per step: the row each row of the next step came from
    finished: list[list[tuple[float, float, list[int], np.ndarray]]] = [[] for _ in range(batch)]

    for t in range(int(limits.max(initial=0))):
        log_probs, state, attn = step(prev, state)
        attn = np.asarray(attn)
        attn_steps.append(attn)
        vocab = log_probs.shape[1]
        last = np.repeat(t + 1 >= limits[active], k)
        log_probs = _force_eos(np.asarray(log_probs), last, eos_id)
        top, values = _top_candidates(scores, log_probs, 2 * k)

        rows = len(active) * k
        source_rows = np.arange(rows)
        next_tokens = np.full(rows, eos_id, dtype=np.int64)
        next_scores = np.full((len(active), k), -np.inf)
        done = np.zeros(len(active), dtype=bool)
        for i, b in enumerate(active):
            alive = 0
            for flat, value in zip(top[i], values[i], strict=True):
                if value == -np.inf:
                    break
                beam, token = divmod(int(flat), vocab)
                row = i * k + beam
                if token == eos_id:
                    length = t + 1
                    finished[b].append(
                        (
                            value / length**length_penalty,
                            value,
                            history[row].tolist(),
                            _attention_path(attn_steps, parents, row),
                        )
                    )
                else:
                    source_rows[i * k + alive] = row
                    next_tokens[i * k + alive] = token
                    next_scores[i, alive] = value
                    alive += 1
                    if alive == k:
                        break
            done[i] = len(finished[b]) >= k or alive == 0
        if done.all():
            break
        keep = np.flatnonzero(~done)
        rows_kept = (keep[:, None] * k + np.arange(k)).reshape(-1)
        source_rows = source_rows[rows_kept]
        state = _next_beams(state, source_rows, rows_kept if done.any() else None, shared)
        history = np.concatenate([history[source_rows], next_tokens[rows_kept, None]], axis=1)
        parents.append(source_rows)
        active, prev, scores = active[keep], next_tokens[rows_kept], next_scores[keep]

    results = []
    for b in range(batch):
        if not finished[b]:  # every candidate of its last step scored -inf
            raise ValueError(f"sentence {b}: no hypothesis ended with a finite score")
        best = max(finished[b], key=lambda f: f[0])  # first of equals: the earlier one
        _, total, tokens, rows_attn = best
        results.append(Hypothesis(tokens, float(total / len(rows_attn)), rows_attn))
    return results


def _attention_path(steps: list[np.ndarray], parents: list[np.ndarray], row: int) -> np.ndarray:
    """The attention rows ``(steps, src_len)`` of the hypothesis in ``row`` of the last step,
    followed back through ``parents`` (kept per step instead of copying every beam's whole
    attention history at every step)."""
    path = [steps[-1][row]]
    for step_attn, parent in zip(reversed(steps[:-1]), reversed(parents), strict=True):
        row = int(parent[row])
        path.append(step_attn[row])
    return np.stack(path[::-1])
