"""Sentences and overlapping windows with cores (service.text.segment), numpy only."""

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.text.segment import (
    Window,
    context_windows,
    sentence_windows,
    split_sentences,
)
from service.text.tokenize import tokenize


def test_a_sentence_just_over_max_tokens_gets_two_windows_cut_in_their_overlap():
    # 163 tokens, max_tokens 150, context 37: two windows of 119, overlapping by 75 tokens, the
    # cut in the middle of the overlap, so token 80 and 81 take their tags from different
    # windows and each has at least 37 tokens of context around it.
    assert context_windows(0, 163, 150) == [Window(0, 119, 0, 81), Window(44, 163, 81, 163)]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (3, 3, []),
        (3, 7, [Window(3, 7, 3, 7)]),  # fits: one window, all core
        (0, 10, [Window(0, 4, 0, 3), Window(2, 6, 3, 5), Window(4, 8, 5, 7), Window(6, 10, 7, 10)]),
    ],
)
def test_windows_of_small_ranges(start, end, expected):
    assert context_windows(start, end, 4) == expected


@pytest.mark.parametrize(("max_tokens", "context"), [(0, 0), (4, 2), (5, -1), (150, 75)])
def test_a_context_leaving_no_core_is_refused(max_tokens, context):
    with pytest.raises(ValueError):
        context_windows(0, 10, max_tokens, context=context)


@given(
    start=st.integers(0, 5),
    length=st.integers(1, 400),
    max_tokens=st.integers(1, 160),
    data=st.data(),
)
def test_cores_partition_the_range_and_keep_their_context(start, length, max_tokens, data):
    context = data.draw(st.none() | st.integers(0, (max_tokens - 1) // 2), label="context")
    end = start + length
    windows = context_windows(start, end, max_tokens, context=context)
    context = max_tokens // 4 if context is None else context

    assert all(w.end - w.start <= max_tokens for w in windows)
    assert [w.core_start for w in windows] == [start] + [w.core_end for w in windows[:-1]]
    assert windows[-1].core_end == end
    for w in windows:
        assert w.start <= w.core_start < w.core_end <= w.end
        assert w.core_start - w.start >= context or w.start == start
        assert w.end - w.core_end >= context or w.end == end
    # the fewest windows that can give every core token its context, of near-equal lengths
    stride = max_tokens - 2 * context
    assert len(windows) == (1 if length <= max_tokens else 1 + -(-(length - max_tokens) // stride))
    assert max(w.end - w.start for w in windows) - min(w.end - w.start for w in windows) <= 1
    assert all(a.start < b.start and a.end < b.end for a, b in pairwise(windows))


def test_sentence_windows_group_windows_by_sentence_and_their_cores_are_the_segments():
    tokens = tokenize("One two three four five six seven. Eight.")
    windows = sentence_windows(tokens, 4)
    assert windows == [
        [Window(0, 4, 0, 3), Window(2, 6, 3, 5), Window(4, 8, 5, 8)],  # 8 tokens with the "."
        [Window(8, 10, 8, 10)],
    ]
    cores = [(w.core_start, w.core_end) for sentence in windows for w in sentence]
    assert cores == [(0, 3), (3, 5), (5, 8), (8, 10)]
    assert sentence_windows(tokens, 4, split_sentences=False)[0][-1].end == len(tokens)
    assert sentence_windows([], 4) == []


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("He went to Paris. Berlin was next.", 2),
        ("He went to Paris.Berlin was next.", 1),  # no space after the period: no boundary
        ("He went to Paris. berlin was next.", 1),  # no capital after it: none either
        ("Mr. Smith went to Paris.", 1),  # an abbreviation's period
        ("he went to paris. berlin was next!", 2),  # no capitals at all: any letter begins one
        ("mr. smith went to paris. j. doe too.", 2),  # abbreviations and initials still hold
        ("HE WENT TO PARIS. berlin was next.", 2),  # no small letter before: the same
        ("he went to paris. Berlin was next. then rome.", 2),  # its second is in ordinary case
        ("He went to paris. berlin was next.", 1),  # a sentence in ordinary case before
    ],
)
def test_a_sentence_ends_at_a_period_followed_by_a_space_and_a_capital(text, sentences):
    assert len(sentence_windows(tokenize(text), 150)) == sentences


def test_split_sentences_keeps_the_whitespace_between_them() -> None:
    text = "  Mr. Smith runs. J. Doe sleeps!\n\nTwo dogs play  "

    sentences, gaps = split_sentences(text)

    assert sentences == ["Mr. Smith runs.", "J. Doe sleeps!", "Two dogs play"]
    assert gaps == [" ", "\n\n"]


@pytest.mark.parametrize("text", ["", "   ", " A man runs. ", "A man runs. two dogs play."])
def test_a_text_of_one_sentence_or_none_comes_back_whole(text: str) -> None:
    assert split_sentences(text) == ([text], [])
