import sys
import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.text.tokenize import normalize_unicode, strip_markup, tokenize


def texts(text: str) -> list[str]:
    return [t.text for t in tokenize(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EU rejects German call.", ["EU", "rejects", "German", "call", "."]),
        ("The U.S. paid $1,000.50 today", ["The", "U.S.", "paid", "$", "1,000.50", "today"]),
        ("I don't like it's plot", ["I", "do", "n't", "like", "it", "'s", "plot"]),
        ("Clinton's aides", ["Clinton", "'s", "aides"]),
        ("it 's a charming journey .", ["it", "'s", "a", "charming", "journey", "."]),
        ("does n't work", ["does", "n't", "work"]),
        ("Jean-Claude Van Damme", ["Jean-Claude", "Van", "Damme"]),
        ("(great!)...", ["(", "great", "!", ")", "..."]),
        ("O'Neill won", ["O'Neill", "won"]),
        ("Zürich 東京 🙂!", ["Zürich", "東京", "🙂", "!"]),
        # combining marks of any script stay in their word: decomposed accents, vowel signs
        ("Zu\u0308rich, हिन्दी and كَتَبَ.", ["Zu\u0308rich", ",", "हिन्दी", "and", "كَتَبَ", "."]),
        (
            "J. Smith of Acme Inc. paid US$ 3 1/2 vs. C$2",
            ["J.", "Smith", "of", "Acme", "Inc.", "paid", "US$", "3", "1/2", "vs.", "C$", "2"],
        ),
        ("S&P and AT&T rose", ["S&P", "and", "AT&T", "rose"]),
        ("Plan B. and plan b.", ["Plan", "B", ".", "and", "plan", "b", "."]),
        ("", []),
        ("   \t\n ", []),
    ],
)
def test_tokenize_follows_treebank_conventions(text, expected):
    assert texts(text) == expected


def test_offsets_point_into_the_input():
    text = "Hello,\tworld!  It's  U.S. made."
    for token in tokenize(text):
        assert text[token.start : token.end] == token.text


@given(st.text(max_size=200))
def test_offsets_round_trip_for_any_unicode(text):
    tokens = tokenize(text)
    previous_end = 0
    for token in tokens:
        assert token.text
        assert text[token.start : token.end] == token.text
        assert token.start >= previous_end  # in order, never overlapping
        assert not text[previous_end : token.start].strip()  # only whitespace is skipped
        previous_end = token.end
    assert not text[previous_end:].strip()


@pytest.mark.parametrize("chain", ["a." * 10_000 + "ab", "U.S." * 5_000 + "x"])
def test_long_letter_period_chains_take_linear_time(chain):
    # Unbounded, the abbreviation rule rescanned the rest of the chain from every letter: 7 s
    # for this 20,000-character text (a text may have up to MAX_TEXT_CHARS, 256 per request).
    started = time.thread_time()  # this thread's CPU: not the threads other tests left running
    tokens = tokenize(chain)
    assert time.thread_time() - started < 1.0
    assert "".join(t.text for t in tokens) == chain


def test_abbreviations_of_up_to_ten_letters_stay_whole():
    assert texts("a.b.c.d.e.f.g.h.i.j. U.S. e.g.") == ["a.b.c.d.e.f.g.h.i.j.", "U.S.", "e.g."]


def test_normalize_unicode_composes_decomposed_letters():
    decomposed = "Zu\u0308rich Mu\u0308ller"
    assert normalize_unicode(decomposed) == "Zürich Müller"
    assert normalize_unicode("Zürich") == "Zürich"
    # One token either way: combining marks belong to their word.
    assert texts(decomposed) == ["Zu\u0308rich", "Mu\u0308ller"]


def test_strip_markup_removes_imdb_line_breaks():
    assert texts(strip_markup("Great.<br /><br />Really<BR/>great")) == [
        "Great",
        ".",
        "Really",
        "great",
    ]


def test_every_combining_mark_of_unicode_stays_in_its_word():
    # The tokenizer only looks a character up in its (slow) class of combining marks when it
    # lies in _MARKS_RANGE: a mark outside it would split its word.
    marks = [
        chr(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Mn", "Mc", "Me")
    ]
    assert len(marks) > 2000
    split = [f"U+{ord(mark):04X}" for mark in marks if len(tokenize(f"a{mark}b")) != 1]
    assert not split
