"""NER token features, sentence splitting and windowing (numpy only)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from service.text.constants import PAD_TOKEN, UNK_TOKEN
from service.text.features import (
    CASE_FEATURES,
    NerEncoder,
    NerPreprocessing,
    case_feature,
    pad_ner_batch,
)
from service.text.segment import sentence_spans, sentence_windows
from service.text.tokenize import tokenize
from service.text.vocab import Vocab


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("1996", "numeric"),
        ("1996-08-22", "mostly_numeric"),
        ("1990s", "mostly_numeric"),
        ("rejects", "lower"),
        ("u.s.", "lower"),
        ("3rd", "lower"),
        ("EU", "upper"),
        ("U.S.", "upper"),
        ("A4", "upper"),
        ("B52", "mostly_numeric"),
        ("iPhone4", "has_digit"),
        ("German", "initial_upper"),
        ("McDonald", "initial_upper"),
        ("Jean-Claude", "initial_upper"),
        ("iPhone", "other"),
        (".", "punctuation"),
        ("--", "punctuation"),
        ("東京", "other"),
    ],
)
def test_case_feature_classes(token, expected):
    assert CASE_FEATURES[case_feature(token)] == expected


def test_case_feature_refuses_an_empty_token():
    with pytest.raises(ValueError):
        case_feature("")


@pytest.fixture
def encoder():
    words = Vocab([PAD_TOKEN, UNK_TOKEN, "eu", "rejects"])
    chars = Vocab([PAD_TOKEN, UNK_TOKEN, *"EUerjcts"])
    return NerEncoder(words, chars, NerPreprocessing(max_word_chars=4))


def test_encoder_looks_words_up_lower_cased_and_keeps_character_case(encoder):
    features = encoder.encode(["EU", "Rejects", "Zürich"])
    assert features.word_ids == [2, 3, 1]
    assert [CASE_FEATURES[c] for c in features.case_ids] == [
        "upper",
        "initial_upper",
        "initial_upper",
    ]
    chars = encoder.chars
    assert features.char_ids[0] == [chars.lookup("E"), chars.lookup("U")]
    assert features.char_ids[1] == [
        1,
        chars.lookup("e"),
        chars.lookup("j"),
        chars.lookup("e"),
    ]  # cut
    assert features.char_ids[2] == [1, 1, chars.lookup("r"), 1]


def test_encoder_reads_decomposed_letters_as_composed_ones():
    words = Vocab([PAD_TOKEN, UNK_TOKEN, "zürich"])
    chars = Vocab([PAD_TOKEN, UNK_TOKEN, *"Zürich"])
    encoder = NerEncoder(words, chars, NerPreprocessing())

    composed, decomposed = encoder.encode(["Zürich"]), encoder.encode(["Zu\u0308rich"])

    assert decomposed == composed
    assert composed.word_ids == [2] and 1 not in composed.char_ids[0]


def test_encoder_refuses_empty_input(encoder):
    with pytest.raises(ValueError):
        encoder.encode([])
    with pytest.raises(ValueError):
        encoder.encode(["ok", ""])


def test_pad_ner_batch_pads_tokens_and_characters_with_zeros(encoder):
    feeds = pad_ner_batch([encoder.encode(["EU", "rejects"]), encoder.encode(["EU"])])
    assert {k: v.shape for k, v in feeds.items()} == {
        "word_ids": (2, 2),
        "case_ids": (2, 2),
        "char_ids": (2, 2, 4),
        "lengths": (2,),
    }
    assert all(v.dtype == np.int64 for v in feeds.values())
    assert feeds["lengths"].tolist() == [2, 1]
    assert feeds["char_ids"][0, 0, 2:].tolist() == [0, 0]  # "EU" padded to 4 characters
    assert not feeds["char_ids"][1, 1].any() and feeds["word_ids"][1, 1] == 0


def test_preprocessing_refuses_other_case_classes():
    with pytest.raises(ValidationError, match="casing classes"):
        NerPreprocessing(case_features=["<pad>", "lower", "upper"])


def sentences(text: str) -> list[str]:
    tokens = tokenize(text)
    return [text[tokens[s].start : tokens[e - 1].end] for s, e in sentence_spans(tokens)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("He went to Paris. Then he left.", ["He went to Paris.", "Then he left."]),
        ("Really? Yes! No.", ["Really?", "Yes!", "No."]),
        ("Mr. Smith met J. Doe of Acme Inc. Today.", ["Mr. Smith met J. Doe of Acme Inc. Today."]),
        ("The U.S. Army won. It paid 3.5 million.", ["The U.S. Army won.", "It paid 3.5 million."]),
        ("Stocks fell.the end. and more", ["Stocks fell.the end. and more"]),
        ("No final stop", ["No final stop"]),
        ("", []),
    ],
)
def test_sentence_split_rule(text, expected):
    assert sentences(text) == expected


def segment_spans(tokens, max_tokens, split_sentences=True):
    """The cores of every sentence's windows: the token ranges whose tags one window gives."""
    windows = sentence_windows(tokens, max_tokens, split_sentences=split_sentences)
    return [(w.core_start, w.core_end) for sentence in windows for w in sentence]


def test_segments_without_sentence_splitting_are_only_windows():
    tokens = tokenize("One. Two. Three. Four.")
    assert segment_spans(tokens, 3, split_sentences=False) == [(0, 2), (2, 5), (5, 8)]
    assert segment_spans(tokens, 3) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert segment_spans([], 3) == []


_PIECES = st.sampled_from(
    ["Peter", "visited", "New", "York", ".", "!", "?", " ", "  ", "\n", "U.S.", "Mr.", "J.", "3.5"]
)
_TEXTS = st.one_of(st.text(max_size=120), st.lists(_PIECES, max_size=60).map("".join))


@given(text=_TEXTS, max_tokens=st.integers(1, 6), split=st.booleans())
def test_segments_cover_every_token_once_in_order(text, max_tokens, split):
    tokens = tokenize(text)
    spans = segment_spans(tokens, max_tokens, split_sentences=split)
    assert [i for s, e in spans for i in range(s, e)] == list(range(len(tokens)))
    assert all(0 < e - s <= max_tokens for s, e in spans)
