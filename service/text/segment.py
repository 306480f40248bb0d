"""Cutting a tokenized text into the pieces a sentence-level model runs on.

A text is split into sentences by a simple, deterministic rule, then any sentence longer than
the model's ``max_tokens`` is cut into windows. Pieces are index ranges into the token list, so
the tokens keep their exact character offsets into the original text and nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from service.text.tokenize import Token

SENTENCE_END = frozenset({".", "!", "?"})
# A period after one of these (or after a single letter, an initial) does not end a sentence.
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "inc", "corp", "co", "ltd"}
    | {"gen", "gov", "sen", "rep", "lt", "col", "sgt", "capt", "mt", "vs", "no"}
)


def _ends_sentence(tokens: Sequence[Token], index: int) -> bool:
    token = tokens[index]
    if token.text not in SENTENCE_END:
        return False
    if index + 1 == len(tokens):
        return True
    following = tokens[index + 1]
    if following.start == token.end or not following.text[0].isupper():
        return False
    return not (token.text == "." and index > 0 and _is_abbreviation(tokens[index - 1], token))


def _is_abbreviation(before: Token, period: Token) -> bool:
    """An initial (one letter) or a listed abbreviation directly followed by the period."""
    if before.end != period.start:
        return False
    initial = len(before.text) == 1 and before.text.isalpha()
    return initial or before.text.lower() in ABBREVIATIONS


def sentence_spans(tokens: Sequence[Token]) -> list[tuple[int, int]]:
    """Split after ``.``, ``!`` or ``?`` followed by whitespace and a capital, or by the end.

    A period directly after an initial (``J. Smith``) or a common abbreviation (``Mr.``,
    ``Inc.``; see :data:`ABBREVIATIONS`) does not end a sentence. Returns ``[start, end)`` token
    index ranges that cover every token in order.
    """
    spans, start = [], 0
    for index in range(len(tokens)):
        if _ends_sentence(tokens, index):
            spans.append((start, index + 1))
            start = index + 1
    if start < len(tokens):
        spans.append((start, len(tokens)))
    return spans


def window_spans(start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """Cut ``[start, end)`` into the fewest windows of at most ``max_tokens`` (near-equal sizes)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    count = -(-(end - start) // max_tokens)
    bounds = [start + (end - start) * i // count for i in range(count + 1)] if count else []
    return list(pairwise(bounds))


def segment_spans(
    tokens: Sequence[Token], max_tokens: int, *, split_sentences: bool = True
) -> list[tuple[int, int]]:
    """Sentences (optionally), then windows: non-empty ``[start, end)`` ranges covering every
    token in order."""
    pieces = sentence_spans(tokens) if split_sentences else [(0, len(tokens))] if tokens else []
    return [window for s, e in pieces for window in window_spans(s, e, max_tokens)]
