import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.text.tokenize import strip_markup, tokenize


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


def test_strip_markup_removes_imdb_line_breaks():
    assert texts(strip_markup("Great.<br /><br />Really<BR/>great")) == [
        "Great",
        ".",
        "Really",
        "great",
    ]
