"""A deterministic word tokenizer that keeps character offsets.

It follows the Penn Treebank / CoNLL-2003 conventions closely enough for models trained on
those corpora: punctuation is split off, clitics are detached (``don't`` -> ``do n't``,
``Clinton's`` -> ``Clinton 's``), while abbreviations (``U.S.``, ``Inc.``, ``vs.``), initials
before a name (``J. Smith``), currencies (``US$``), numbers with separators (``1,000``,
``3.5``, ``1/2``) and hyphenated words (``Jean-Claude``) stay whole. Every token records the
``start``/``end`` offsets of its characters in the input string, so ``text[start:end]`` is
always the token text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from service.text.charclass import char_class

# Combining marks (Unicode categories Mn, Mc, Me: decomposed accents, Devanagari and Arabic
# vowel signs...), which ``\w`` leaves out. They lie below U+20000 and in the variation selectors
# at U+E0100: scanning only those takes ~60 ms at import.
_COMBINING_MARKS = char_class(
    lambda char: unicodedata.category(char) in ("Mn", "Mc", "Me"),
    (*range(0x20000), *range(0xE0000, 0xE1000)),
)

# Every combining mark lies in this range (U+0300 is the first): the class above is a long list
# of ranges that the regex engine reads one by one, so a character is only looked up in it when
# it falls in this range. Letters, digits, spaces and punctuation of ASCII text never are.
_MARKS_RANGE = "\u0300-\U000e0fff"

# Letters and digits with their combining marks count as word characters: a word written with
# decomposed accents or in a script with vowel signs stays one token.
_W = rf"[^\W_]|(?=[{_MARKS_RANGE}])[{_COMBINING_MARKS}]"
_UPPER = "A-ZÀ-ÖØ-Þ"
_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Inc|Corp|Co|Ltd|Bros|vs|Gen|Gov|Sen|Rep|Lt|Col|Sgt|Capt|Mt|Ft"
    "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_TOKEN_RE = re.compile(
    rf"""
    (?:[^\W\d_]\.){{2,10}}(?![^\W\d_])    # abbreviations: U.S., e.g. (bounded: linear time)
    | (?<![^\W_])(?:{_ABBREVIATIONS})\.      # titles and company suffixes: Mr. Inc. vs.
    | (?<![^\W_])[{_UPPER}]\.(?=\s+[{_UPPER}])  # an initial before a name: J. Smith
    | [{_UPPER}]{{1,3}}\$                     # currencies: US$ C$ HK$
    | [{_UPPER}]+&[{_UPPER}]+                # S&P  AT&T
    | \d+(?:[.,/]\d+)+                    # numbers with separators: 1,000  3.5  1/2
    | (?:{_W})+(?:[-'’](?:{_W})+)*          # words, hyphenated words, internal apostrophes
    | ['’](?i:s|re|ve|ll|d|m)\b            # a clitic already split off: 's 're
    | \.\.\.|--|``|''                     # multi-character punctuation
    | \S                                  # anything else, one character at a time
    """,
    re.VERBOSE,
)
_CLITIC_RE = re.compile(r"(?i)(n['’]t|['’](?:s|re|ve|ll|d|m))$")
_BREAK_TAG_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)


class Token(NamedTuple):
    """A token and its character span ``[start, end)`` in the original string (a named tuple:
    a long text has many, and a tuple is made several times faster than a frozen dataclass)."""

    text: str
    start: int
    end: int


def _split_clitic(text: str, start: int) -> list[Token]:
    match = _CLITIC_RE.search(text)
    if match is None or match.start() == 0:
        return [Token(text, start, start + len(text))]
    cut = match.start()
    return [
        Token(text[:cut], start, start + cut),
        Token(text[cut:], start + cut, start + len(text)),
    ]


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens with exact character offsets."""
    tokens: list[Token] = []
    for match in _TOKEN_RE.finditer(text):
        word = match.group()
        if "'" in word or "’" in word:  # only these can end in a clitic
            tokens.extend(_split_clitic(word, match.start()))
        else:
            tokens.append(Token(word, match.start(), match.end()))
    return tokens


def normalize_unicode(text: str) -> str:
    """``text`` in Unicode NFC, the form the vocabularies hold: text from NFD sources (macOS
    file names, some editors) spells ``ü`` as ``u`` + a combining diaeresis, which would be
    looked up as an unknown word. For lookup only: tokens keep the offsets of the original."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def strip_markup(text: str) -> str:
    """Replace HTML line breaks (as found in IMDB reviews) with spaces."""
    return _BREAK_TAG_RE.sub(" ", text)
