"""Token-budget batches: similar lengths together, the padded size under the budget."""

import random

from hypothesis import given
from hypothesis import strategies as st

from training.batching import token_budget_batches


@given(
    lengths=st.lists(st.integers(1, 60), max_size=80),
    batch_tokens=st.integers(1, 400),
    max_batch_size=st.integers(1, 16),
    seed=st.none() | st.integers(0, 10),
)
def test_every_example_once_in_batches_within_the_budget(
    lengths, batch_tokens, max_batch_size, seed
):
    rng = None if seed is None else random.Random(seed)

    batches = token_budget_batches(lengths, batch_tokens, max_batch_size, rng)

    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= max_batch_size
        padded = max(lengths[i] for i in batch) * len(batch)
        assert padded <= batch_tokens or len(batch) == 1  # a longer example goes alone


def test_without_a_random_generator_batches_are_sorted_by_length_and_repeatable():
    lengths = [5, 1, 9, 1, 5, 9]

    batches = token_budget_batches(lengths, batch_tokens=20, max_batch_size=8, rng=None)

    assert batches == [[1, 3, 0, 4], [2, 5]]  # 4 rows of 5 tokens at most, then 2 rows of 9
    assert token_budget_batches(lengths, 20, 8, None) == batches
