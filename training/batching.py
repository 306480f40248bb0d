"""Grouping examples into batches of similar length (less padding, less wasted work)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def token_budget_batches(
    lengths: Sequence[int], batch_tokens: int, max_batch_size: int, rng: random.Random | None
) -> list[list[int]]:
    """Group example indices into batches of similar length under a padded-token budget.

    With ``rng`` the grouping is randomised (noisy sort, shuffled batch order) for training;
    without it, batches are deterministic (evaluation).
    """
    noise = (lambda: rng.uniform(0, 3)) if rng else (lambda: 0.0)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i] + noise())
    batches, current, longest = [], [], 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        if current and (
            longest_if_added * (len(current) + 1) > batch_tokens or len(current) >= max_batch_size
        ):
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    if rng:
        rng.shuffle(batches)
    return batches
