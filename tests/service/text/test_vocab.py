from collections import Counter

import numpy as np
import pytest

from service.text import Vocab, WordEncoder, pad_batch
from service.text.constants import PAD_TOKEN, UNK_TOKEN
from service.text.encoding import WordEncoderConfig


def test_build_orders_by_frequency_then_fills_with_extra():
    vocab = Vocab.build(
        Counter({"b": 3, "a": 3, "c": 5, "rare": 1}), min_freq=2, max_size=6, extra=["a", "x", "y"]
    )
    assert vocab.tokens == [PAD_TOKEN, UNK_TOKEN, "c", "a", "b", "x"]


def test_unknown_tokens_map_to_unk():
    vocab = Vocab([PAD_TOKEN, UNK_TOKEN, "good"])
    assert vocab.encode(["good", "bad"]) == [2, vocab.unk_id]


def test_json_round_trip(tmp_path):
    vocab = Vocab([PAD_TOKEN, UNK_TOKEN, "café", "東京"])
    vocab.to_json(tmp_path / "vocab.json")
    assert Vocab.from_json(tmp_path / "vocab.json").tokens == vocab.tokens


@pytest.mark.parametrize("tokens", [["a", "b"], [PAD_TOKEN, UNK_TOKEN, "a", "a"]])
def test_malformed_vocabularies_are_refused(tokens):
    with pytest.raises(ValueError):
        Vocab(tokens)


def test_pad_batch_pads_to_longest():
    ids, lengths = pad_batch([[5, 6, 7], [8]])
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert lengths.tolist() == [3, 1]


@pytest.mark.parametrize("sequences", [[], [[1], []]])
def test_pad_batch_refuses_empty_input(sequences):
    with pytest.raises(ValueError):
        pad_batch(sequences)


def test_word_encoder_lowercases_truncates_and_flags():
    vocab = Vocab([PAD_TOKEN, UNK_TOKEN, "great", "film", "."])
    encoder = WordEncoder(vocab, WordEncoderConfig(max_tokens=3))
    encoded = encoder.encode("Great film.<br />Great")
    assert encoded.tokens == ["great", "film", "."]
    assert encoded.ids == [2, 3, 4]
    assert encoded.truncated
    assert not encoder.encode("Great film").truncated


def test_word_encoder_reads_decomposed_letters_as_composed_ones():
    encoder = WordEncoder(Vocab([PAD_TOKEN, UNK_TOKEN, "café", "crème"]), WordEncoderConfig())
    assert (
        encoder.encode("Cafe\u0301 cre\u0300me").ids == encoder.encode("Café crème").ids == [2, 3]
    )


def test_word_encoder_never_returns_an_empty_sequence():
    encoder = WordEncoder(Vocab([PAD_TOKEN, UNK_TOKEN]), WordEncoderConfig())
    assert encoder.encode("<br />").ids == [1]


def test_cased_and_lower_cased_text_with_either_apostrophe_read_alike():
    """What a model trained on lower-cased, ASCII-apostrophe text (SST-2) sees of user text."""
    config = WordEncoderConfig(lowercase_first=True, fold_apostrophes=True)
    encoder = WordEncoder(Vocab([PAD_TOKEN, UNK_TOKEN]), config)
    typed = encoder.words("Mr. Smith’s film isn’t bad")
    assert typed == encoder.words("mr. smith 's film is n't bad")
    assert typed == ["mr", ".", "smith", "'s", "film", "is", "n't", "bad"]


def test_an_artifact_exported_before_the_two_settings_keeps_its_preprocessing():
    encoder = WordEncoder(Vocab([PAD_TOKEN, UNK_TOKEN]), WordEncoderConfig())
    assert encoder.words("Mr. Smith’s film") == ["mr.", "smith", "’s", "film"]
