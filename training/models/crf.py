"""A linear-chain conditional random field over per-token emission scores.

The score of tags ``y`` for a sentence of ``n`` tokens is::

    start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_{n-1}]

Training minimises ``log Z - score(gold)`` (forward algorithm over a mask); decoding is Viterbi.
The service decodes with the same scores in numpy (``service.predictors.viterbi``), so
:meth:`CRF.scores` is what the export writes to ``crf.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Score of a forbidden transition: exp(-1e4) is 0 in float32 and float64, yet the value stays
# finite, so no inf/NaN arithmetic anywhere (training, JSON, numpy).
FORBIDDEN = -1.0e4


def iob2_constraints(tags: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Allowed ``(transitions (tags, tags), start (tags,), end (tags,))`` for IOB2 tags.

    ``I-X`` may only follow ``B-X`` or ``I-X`` and cannot start a sentence; everything else is
    allowed.
    """
    count = len(tags)
    allowed = torch.ones(count, count, dtype=torch.bool)
    start = torch.ones(count, dtype=torch.bool)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            start[j] = False
            for i, previous in enumerate(tags):
                allowed[i, j] = previous in (f"B-{tag[2:]}", tag)
    return allowed, start, torch.ones(count, dtype=torch.bool)


class CRF(nn.Module):
    """Learned transition, start and end scores; optional hard constraints (e.g. IOB2).

    Shapes: ``emissions (batch, tokens, tags)``, ``tags (batch, tokens)``, ``mask (batch,
    tokens)`` true at real tokens, each sentence's real tokens first and at least one of them.
    """

    def __init__(
        self,
        num_tags: int,
        allowed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        if allowed is None:
            allowed = (
                torch.ones(num_tags, num_tags, dtype=torch.bool),
                torch.ones(num_tags, dtype=torch.bool),
                torch.ones(num_tags, dtype=torch.bool),
            )
        self.register_buffer("allowed_transitions", allowed[0].clone())
        self.register_buffer("allowed_start", allowed[1].clone())
        self.register_buffer("allowed_end", allowed[2].clone())

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Effective ``(transitions, start, end)``: forbidden entries set to :data:`FORBIDDEN`."""
        forbid = torch.tensor(FORBIDDEN, dtype=self.transitions.dtype)
        return (
            torch.where(self.allowed_transitions, self.transitions, forbid),
            torch.where(self.allowed_start, self.start, forbid),
            torch.where(self.allowed_end, self.end, forbid),
        )

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``log Z`` of each sentence, ``(batch,)``, by the forward algorithm."""
        transitions, start, end = self.scores()
        alpha = start + emissions[:, 0]  # (batch, tags)
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def sequence_score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The score of the given tags of each sentence, ``(batch,)``."""
        transitions, start, end = self.scores()
        maskf = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (batch, tokens)
        score = start[tags[:, 0]] + (emitted * maskf).sum(dim=1)
        score = score + (transitions[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(dim=1)
        last = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1)).squeeze(1)
        return score + end[last]

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the gold tags, averaged over the sentences."""
        return (
            self.log_partition(emissions, mask) - self.sequence_score(emissions, tags, mask)
        ).mean()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the best tag ids of each sentence (ties to the lowest id)."""
        transitions, start, end = self.scores()
        batch, steps, _ = emissions.shape
        identity = torch.arange(self.num_tags).expand(batch, -1)
        score = start + emissions[:, 0]
        backpointers = []
        for t in range(1, steps):
            best, best_previous = (score.unsqueeze(2) + transitions).max(dim=1)
            active = mask[:, t : t + 1]
            score = torch.where(active, best + emissions[:, t], score)
            backpointers.append(torch.where(active, best_previous, identity))
        tag = (score + end).argmax(dim=1)
        path = [tag]
        for pointers in reversed(backpointers):
            tag = pointers.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        path = torch.stack(path[::-1], dim=1)  # (batch, tokens)
        lengths = mask.sum(dim=1).tolist()
        return [path[row, :length].tolist() for row, length in enumerate(lengths)]
