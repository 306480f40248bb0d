"""Linear-chain CRF inference in numpy: Viterbi decoding and forward-backward posteriors.

The NER graph stops at per-token emission scores; the CRF's transition, start and end scores
travel as JSON (``crf.json``) and decoding runs here, batched over sentences of different
lengths. The score of a tag sequence ``y`` of length ``n`` is::

    start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_{n-1}]

and ``P(y | x) = exp(score(y) - log Z)``, exactly as in ``training.models.crf.CRF``.
Everything is computed in float64 and in log space.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CrfParameters:
    """The CRF's scores: ``transitions (tags, tags)`` from row tag to column tag, ``start`` and
    ``end (tags,)``. Forbidden transitions hold a large negative score, not ``-inf``."""

    tags: tuple[str, ...]
    transitions: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.tags)
        shapes = (self.transitions.shape, self.start.shape, self.end.shape)
        if shapes != ((count, count), (count,), (count,)):
            raise ValueError(f"CRF scores have shapes {shapes} for {count} tags")
        if not all(np.isfinite(a).all() for a in (self.transitions, self.start, self.end)):
            raise ValueError("CRF scores must be finite")

    @property
    def num_tags(self) -> int:
        return len(self.tags)

    @classmethod
    def from_dict(cls, values: dict) -> CrfParameters:
        """From the JSON form: ``{"tags": [...], "transitions": [[...]], "start", "end"}``."""
        return cls(
            tags=tuple(values["tags"]),
            transitions=np.asarray(values["transitions"], dtype=np.float64),
            start=np.asarray(values["start"], dtype=np.float64),
            end=np.asarray(values["end"], dtype=np.float64),
        )

    def to_dict(self) -> dict:
        """The JSON form (see :meth:`from_dict`)."""
        return {
            "tags": list(self.tags),
            "transitions": self.transitions.tolist(),
            "start": self.start.tolist(),
            "end": self.end.tolist(),
        }

    @classmethod
    def from_json(cls, path: Path) -> CrfParameters:
        """Read ``crf.json``."""
        return cls.from_dict(json.loads(Path(path).read_text("utf-8")))

    def to_json(self, path: Path) -> None:
        """Write ``crf.json`` (float64 values, exact for the float32 scores of a model)."""
        Path(path).write_text(json.dumps(self.to_dict()) + "\n", "utf-8")


def _check(
    emissions: np.ndarray, lengths: np.ndarray, crf: CrfParameters
) -> tuple[np.ndarray, np.ndarray]:
    emissions = np.asarray(emissions, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if emissions.ndim != 3 or emissions.shape[2] != crf.num_tags:
        raise ValueError(
            f"emissions of shape {emissions.shape}, expected (batch, tokens, {crf.num_tags})"
        )
    if lengths.shape != (emissions.shape[0],):
        raise ValueError(f"lengths of shape {lengths.shape} for a batch of {emissions.shape[0]}")
    if len(lengths) and (lengths.min() < 1 or lengths.max() > emissions.shape[1]):
        raise ValueError(f"lengths must lie in 1..{emissions.shape[1]}, got {lengths.tolist()}")
    return emissions, lengths


def viterbi_decode(
    emissions: np.ndarray, lengths: np.ndarray, crf: CrfParameters
) -> list[np.ndarray]:
    """The highest-scoring tag sequence of each sentence.

    ``emissions`` is ``(batch, tokens, tags)``, ``lengths`` is ``(batch,)``; positions at or
    beyond a sentence's length are ignored. Returns one int64 array of tag ids per sentence, of
    that sentence's length. Ties go to the lowest tag id, as in PyTorch's ``argmax``.
    """
    emissions, lengths = _check(emissions, lengths, crf)
    batch, steps, num_tags = emissions.shape
    identity = np.broadcast_to(np.arange(num_tags), (batch, num_tags))
    backpointers = np.zeros((batch, steps, num_tags), dtype=np.int64)
    score = crf.start + emissions[:, 0]  # (batch, tags)
    for t in range(1, steps):
        candidates = score[:, :, None] + crf.transitions  # (batch, previous tag, tag)
        best_previous = candidates.argmax(axis=1)  # (batch, tags)
        best = np.take_along_axis(candidates, best_previous[:, None, :], axis=1)[:, 0]
        active = (t < lengths)[:, None]
        score = np.where(active, best + emissions[:, t], score)
        # Past a sentence's end the path stays on its last tag (identity back-pointers).
        backpointers[:, t] = np.where(active, best_previous, identity)
    path = np.zeros((batch, steps), dtype=np.int64)
    path[:, -1] = (score + crf.end).argmax(axis=1)
    rows = np.arange(batch)
    for t in range(steps - 1, 0, -1):
        path[:, t - 1] = backpointers[rows, t, path[:, t]]
    return [path[row, : lengths[row]] for row in range(batch)]


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    peak = values.max(axis=axis, keepdims=True)
    total = np.log(np.exp(values - peak).sum(axis=axis, keepdims=True)) + peak
    return np.squeeze(total, axis=axis)


@dataclass(frozen=True)
class CrfPosterior:
    """Forward-backward results of a batch, in log space.

    ``alpha[b, t, k]``: log-sum of the scores of all prefixes ending in tag ``k`` at ``t``
    (emission at ``t`` included); ``beta[b, t, k]``: log-sum of the scores of all suffixes
    after ``t`` given tag ``k`` at ``t`` (end score included); ``log_z[b]``: the log-partition.
    """

    emissions: np.ndarray  # (batch, tokens, tags)
    lengths: np.ndarray  # (batch,)
    alpha: np.ndarray  # (batch, tokens, tags)
    beta: np.ndarray  # (batch, tokens, tags)
    log_z: np.ndarray  # (batch,)
    crf: CrfParameters

    def marginals(self) -> np.ndarray:
        """``P(y_t = k | x)`` as ``(batch, tokens, tags)``; zero beyond each sentence's length."""
        log_p = self.alpha + self.beta - self.log_z[:, None, None]
        real = np.arange(self.alpha.shape[1])[None, :] < self.lengths[:, None]
        return np.where(real[:, :, None], np.exp(log_p), 0.0)

    def span_probability(self, row: int, start: int, end: int, tags: Sequence[int]) -> float:
        """``P(y_start..y_{end-1} = tags | x)``: the probability that tokens ``[start, end)``
        of sentence ``row`` carry exactly these tags (whatever the tags elsewhere)."""
        if not 0 <= start < end <= self.lengths[row] or len(tags) != end - start:
            raise ValueError(
                f"bad span [{start}, {end}) for a sentence of {self.lengths[row]} tokens"
            )
        log_p = (
            self.alpha[row, start, tags[0]] + self.beta[row, end - 1, tags[-1]] - self.log_z[row]
        )
        for offset in range(1, end - start):
            previous, tag = tags[offset - 1], tags[offset]
            log_p += self.crf.transitions[previous, tag] + self.emissions[row, start + offset, tag]
        return float(np.exp(min(log_p, 0.0)))


def forward_backward(
    emissions: np.ndarray, lengths: np.ndarray, crf: CrfParameters
) -> CrfPosterior:
    """Run the forward and backward algorithms over a batch (see :class:`CrfPosterior`)."""
    emissions, lengths = _check(emissions, lengths, crf)
    batch, steps, num_tags = emissions.shape
    alpha = np.zeros((batch, steps, num_tags))
    alpha[:, 0] = crf.start + emissions[:, 0]
    for t in range(1, steps):
        step = _logsumexp(alpha[:, t - 1, :, None] + crf.transitions, axis=1) + emissions[:, t]
        alpha[:, t] = np.where((t < lengths)[:, None], step, alpha[:, t - 1])
    # alpha is carried unchanged past each sentence's end, so the last step holds its total.
    log_z = _logsumexp(alpha[:, -1] + crf.end, axis=1)
    beta = np.zeros((batch, steps, num_tags))
    beta[:, -1] = crf.end
    for t in range(steps - 2, -1, -1):
        following = emissions[:, t + 1] + beta[:, t + 1]  # (batch, tags)
        step = _logsumexp(crf.transitions + following[:, None, :], axis=2)
        beta[:, t] = np.where((t + 1 < lengths)[:, None], step, crf.end)
    return CrfPosterior(emissions, lengths, alpha, beta, log_z, crf)
