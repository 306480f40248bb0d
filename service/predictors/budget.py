"""The most work one request may ask of a model (``MAX_REQUEST_TOKENS``).

The body-size and text limits bound what a request holds, not what it costs: 256 texts of
20,000 characters each fit in them, and make the NER model tag a million words, or the
translator run a 10-beam search of 200 steps for every text, which no deadline can stop once
it runs. Each predictor counts, before its first graph call, the tokens that a request makes
its model read or write, and refuses the request when they are more than its budget.
"""

from __future__ import annotations


class RequestTooLarge(ValueError):
    """A request that would make a model process more than ``MAX_REQUEST_TOKENS`` tokens."""

    def __init__(self, task: str, tokens: int, limit: int, counted: str):
        self.task = task
        self.tokens = tokens
        self.limit = limit
        super().__init__(
            f"this request holds {tokens:,} tokens for the {task} model ({counted}), more than "
            f"the {limit:,} one request may hold (MAX_REQUEST_TOKENS); send its texts in "
            "several requests"
        )


def check_request_tokens(task: str, tokens: int, limit: int | None, counted: str) -> None:
    """Raise :class:`RequestTooLarge` when ``tokens`` is over ``limit`` (None: no limit, as in
    training and the benchmarks). ``counted`` says how the predictor counts them."""
    if limit is not None and tokens > limit:
        raise RequestTooLarge(task, tokens, limit, counted)
