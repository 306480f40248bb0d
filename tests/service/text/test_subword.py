"""The sentencepiece wrapper shared by training and the translator."""

import pytest

from service.text.subword import SubwordTokenizer, normalize_whitespace

LINES = [
    "Ein Mann fährt Fahrrad.",
    "Zwei Hunde spielen im Schnee!",
    "Eine Frau, die einen roten Hut trägt, liest ein Buch.",
    "Kinder spielen am Strand.",
] * 20


@pytest.fixture(scope="module")
def tokenizer() -> SubwordTokenizer:
    return SubwordTokenizer.train(LINES, vocab_size=60)


def test_reserved_ids_are_pad_unk_bos_eos(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    assert min(tokenizer.encode(" ".join(LINES[:4]))) > tokenizer.eos_id


def test_a_model_with_other_reserved_ids_is_refused():
    # sentencepiece's own defaults (unk 0, bos 1, eos 2, no pad): every id would be misread.
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(LINES), model_writer=model, vocab_size=60, hard_vocab_limit=False,
        num_threads=1, minloglevel=2,
    )  # fmt: skip

    with pytest.raises(ValueError, match=r"reserves ids \(-1, 0, 1, 2\), expected \(0, 1, 2, 3\)"):
        SubwordTokenizer(model.getvalue())


@pytest.mark.parametrize("text", LINES[:4])
def test_decode_restores_cased_punctuated_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_ids_are_dropped_when_decoding(tokenizer):
    ids = tokenizer.encode("Ein Mann.")
    special = [tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id]
    assert tokenizer.decode([*special, *ids, tokenizer.eos_id, 0]) == "Ein Mann."
    assert tokenizer.decode([*ids[:2], tokenizer.unk_id, *ids[2:]]) == "Ein Mann."  # no " ⁇ "


def test_tabs_and_runs_of_spaces_read_as_one_space(tokenizer):
    assert normalize_whitespace(" Ein\tMann  fährt\n") == "Ein Mann fährt"
    assert tokenizer.encode("Ein\tMann  fährt") == tokenizer.encode("Ein Mann fährt")


def test_source_ids_end_with_eos_and_respect_the_limit(tokenizer):
    ids = tokenizer.encode_source("Eine Frau liest ein Buch.")
    assert ids[-1] == tokenizer.eos_id and ids[:-1] == tokenizer.encode("Eine Frau liest ein Buch.")
    cut = tokenizer.encode_source("Eine Frau liest ein Buch.", max_tokens=3)
    assert len(cut) == 3 and cut[-1] == tokenizer.eos_id
    assert tokenizer.encode_source("") == [tokenizer.eos_id]
    assert tokenizer.pieces(cut)[-1] == "</s>"


def test_the_model_round_trips_through_its_bytes(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "target.model")
    again = SubwordTokenizer.from_file(path)
    assert again.encode(LINES[2]) == tokenizer.encode(LINES[2]) and len(again) == len(tokenizer)
