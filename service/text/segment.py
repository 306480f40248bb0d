"""Cutting a tokenized text into the pieces a sentence-level model runs on.

A text is split into sentences by a simple, deterministic rule, then any sentence longer than
the model's ``max_tokens`` is covered by overlapping windows (:func:`context_windows`): each
window is at most ``max_tokens`` long and keeps the tags of its *core* only; the tokens around
the core (at least ``max_tokens // 4`` on each side, except at the sentence's ends) are context
for it, run through the model and then discarded. The cores cut the sentence into consecutive,
non-overlapping pieces, so every token takes its tags from exactly one window, one in which it
has context on both sides. Pieces are index ranges into the token list, so the tokens keep their
exact character offsets into the original text and nothing is dropped.

The translator splits texts by the same rule (:func:`split_sentences`): its model was trained on
single sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

from service.text.tokenize import Token, tokenize

SENTENCE_END = frozenset({".", "!", "?"})
# A period after one of these (or after a single letter, an initial) does not end a sentence.
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "inc", "corp", "co", "ltd"}
    | {"gen", "gov", "sen", "rep", "lt", "col", "sgt", "capt", "mt", "vs", "no"}
)


def _ends_sentence(tokens: Sequence[Token], index: int, uncased: bool) -> bool:
    token = tokens[index]
    if token.text not in SENTENCE_END:
        return False
    if index + 1 == len(tokens):
        return True
    following = tokens[index + 1]
    starts = following.text[0].isupper() or (uncased and following.text[0].isalpha())
    if following.start == token.end or not starts:
        return False
    return not (token.text == "." and index > 0 and _is_abbreviation(tokens[index - 1], token))


def _is_abbreviation(before: Token, period: Token) -> bool:
    """An initial (one letter) or a listed abbreviation directly followed by the period."""
    if before.end != period.start:
        return False
    initial = len(before.text) == 1 and before.text.isalpha()
    return initial or before.text.lower() in ABBREVIATIONS


def sentence_spans(tokens: Sequence[Token]) -> list[tuple[int, int]]:
    """Split after ``.``, ``!`` or ``?`` followed by whitespace and a capital, or by the end; or
    by any letter after a sentence with no capital or no small letter ("a man sits. a dog
    runs.", "A MAN SITS. a dog runs."), whose case says nothing about where the next begins.

    A period directly after an initial (``J. Smith``) or a common abbreviation (``Mr.``,
    ``Inc.``; see :data:`ABBREVIATIONS`) does not end a sentence. Returns ``[start, end)`` token
    index ranges that cover every token in order.
    """
    spans, start = [], 0
    upper = lower = False  # the sentence so far has a capital, a small letter
    for index in range(len(tokens)):
        text = tokens[index].text
        upper = upper or any(char.isupper() for char in text)
        lower = lower or any(char.islower() for char in text)
        if _ends_sentence(tokens, index, uncased=not (upper and lower)):
            spans.append((start, index + 1))
            start = index + 1
            upper = lower = False
    if start < len(tokens):
        spans.append((start, len(tokens)))
    return spans


def split_sentences(text: str) -> tuple[list[str], list[str]]:
    """The sentences of ``text`` (see :func:`sentence_spans`) and the whitespace between them
    (one fewer); a text of one sentence, or of none, comes back whole."""
    tokens = tokenize(text)
    spans = sentence_spans(tokens)
    if len(spans) < 2:
        return [text], []
    bounds = [(tokens[start].start, tokens[end - 1].end) for start, end in spans]
    sentences = [text[start:end] for start, end in bounds]
    gaps = [text[end:start] for (_, end), (start, _) in pairwise(bounds)]
    return sentences, gaps


class Window(NamedTuple):
    """Tokens ``[start, end)`` run through the model as one row, of which only the tags of the
    core ``[core_start, core_end)`` are kept; the rest is context."""

    start: int
    end: int
    core_start: int
    core_end: int


def context_windows(
    start: int, end: int, max_tokens: int, *, context: int | None = None
) -> list[Window]:
    """Cover ``[start, end)`` with the fewest overlapping windows of at most ``max_tokens`` whose
    cores cut it into consecutive pieces, each core token having at least ``context`` tokens of
    its window on either side (fewer only at ``start`` and ``end``).

    ``context`` defaults to ``max_tokens // 4``. A range of at most ``max_tokens`` is one window,
    all core. Otherwise the windows have near-equal lengths, start at near-equal steps, and
    neighbours overlap by at least ``2 * context`` tokens; the cut between two cores lies in the
    middle of their overlap.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    context = max_tokens // 4 if context is None else context
    if not 0 <= 2 * context < max_tokens:
        raise ValueError(f"context must lie in 0..{(max_tokens - 1) // 2}, got {context}")
    length = end - start
    if length <= 0:
        return []
    if length <= max_tokens:
        return [Window(start, end, start, end)]
    # k windows of w tokens, neighbours overlapping by 2 * context, cover k * w - (k - 1) * 2 *
    # context tokens: count is the fewest k that reach length with w = max_tokens, size the
    # shortest w that then does.
    stride = max_tokens - 2 * context
    count = 1 + -(-(length - max_tokens) // stride)
    size = -(-(length + (count - 1) * 2 * context) // count)
    starts = [start + (length - size) * i // (count - 1) for i in range(count)]
    cuts = [(after + before + size) // 2 for before, after in pairwise(starts)]
    cores = list(pairwise([start, *cuts, end]))
    return [
        Window(first, first + size, core_start, core_end)
        for first, (core_start, core_end) in zip(starts, cores, strict=True)
    ]


def sentence_windows(
    tokens: Sequence[Token], max_tokens: int, *, split_sentences: bool = True
) -> list[list[Window]]:
    """The windows of each sentence (optionally split by :func:`sentence_spans`; otherwise all
    the tokens are one sentence), in order; their cores cover every token once, in order."""
    pieces = sentence_spans(tokens) if split_sentences else [(0, len(tokens))] if tokens else []
    return [context_windows(s, e, max_tokens) for s, e in pieces]
