"""The most work one request may ask of a model (``MAX_REQUEST_TOKENS``).

The body-size and text limits bound what a request holds, not what it costs: about 100 texts
of 20,000 characters fit in them and make the NER model tag a million words, and 256 short
texts make the translator run a 10-beam search for each, which no deadline can stop once it
runs. Each predictor counts, text by text as it encodes them and before its first graph call,
the tokens that a request makes its model read or write, and refuses the request as soon as
they are more than its budget: the texts after that one are not even encoded, so a request far
over the budget costs no more to refuse than one just over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

Text = TypeVar("Text")  # a text, or a pre-tokenized sentence
Encoded = TypeVar("Encoded")


class RequestTooLarge(ValueError):
    """A request that would make a model process more than ``MAX_REQUEST_TOKENS`` tokens;
    ``tokens`` are those counted until the limit was passed (all of them when ``complete``)."""

    def __init__(self, task: str, tokens: int, limit: int, counted: str, complete: bool = True):
        self.task = task
        self.tokens = tokens
        self.limit = limit
        super().__init__(
            f"this request holds {'' if complete else 'at least '}{tokens:,} tokens for the "
            f"{task} model ({counted}), more than the {limit:,} one request may hold "
            "(MAX_REQUEST_TOKENS); send its texts in several requests"
        )


def encode_within_budget(
    task: str,
    texts: Sequence[Text],
    encode: Callable[[Text], Encoded],
    tokens: Callable[[Encoded], int],
    limit: int | None,
    counted: str,
) -> list[Encoded]:
    """``encode`` of each text, in order, adding up their ``tokens``; raise
    :class:`RequestTooLarge` at the first text that takes the sum over ``limit`` (None: no
    limit, as in training and the benchmarks). ``counted`` says how the predictor counts."""
    encoded, total = [], 0
    for index, text in enumerate(texts):
        item = encode(text)
        total += tokens(item)
        if limit is not None and total > limit:
            raise RequestTooLarge(task, total, limit, counted, complete=index == len(texts) - 1)
        encoded.append(item)
    return encoded
