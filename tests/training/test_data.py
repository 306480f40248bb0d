"""The data readers' behaviour on files a user writes: encodings and line ends."""

import pytest

from training.data import (
    DataError,
    LabeledText,
    read_conll,
    read_labeled_texts,
    read_lines,
    split_holdout,
)
from training.tasks.translation import read_parallel


@pytest.mark.parametrize("reader", [read_conll, read_labeled_texts, read_lines])
def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path, reader):
    path = tmp_path / "latin1.txt"
    path.write_bytes("EU B-ORG\nZürich B-LOC\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt:2: not UTF-8 text \(invalid .* at byte 10\)"):
        reader(path)


def test_parallel_files_pair_their_lines_whatever_their_last_line_end(tmp_path):
    src, tgt = tmp_path / "a.en", tmp_path / "a.de"
    src.write_text("one\ntwo\n", "utf-8")
    tgt.write_text("eins\nzwei", "utf-8")  # no line end after the last line
    assert read_parallel(src, tgt) == [("one", "eins"), ("two", "zwei")]
    tgt.write_text("eins\n", "utf-8")
    with pytest.raises(DataError, match=r"a.en has 2 lines, .*a.de has 1"):
        read_parallel(src, tgt)


@pytest.mark.parametrize("blank_in", ["src", "tgt"])
def test_a_blank_line_in_parallel_files_is_refused_with_its_place(tmp_path, blank_in):
    src, tgt = tmp_path / "a.en", tmp_path / "a.de"
    src.write_text("one\n \nthree\n" if blank_in == "src" else "one\ntwo\nthree\n", "utf-8")
    tgt.write_text("eins\n\ndrei\n" if blank_in == "tgt" else "eins\nzwei\ndrei\n", "utf-8")
    name = "a.en" if blank_in == "src" else "a.de"
    with pytest.raises(DataError, match=rf"{name}:2: the line is blank"):
        read_parallel(src, tgt)


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    tsv = tmp_path / "own.tsv"
    tsv.write_text("\ufefftext\tlabel\ngreat\t1\n", "utf-8")
    assert read_labeled_texts(tsv) == [LabeledText("great", 1)]
    conll = tmp_path / "own.conll"
    conll.write_text("\ufeff-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n", "utf-8")
    assert read_conll(conll) == [[("EU", "B-ORG")]]


@pytest.mark.parametrize("header", ["text\tlabel", "Text\tLabel", "sentence\tlabel "])
def test_a_tsv_header_in_any_case(tmp_path, header):
    tsv = tmp_path / "own.tsv"
    tsv.write_text(f"{header}\ngreat\t1\n", "utf-8")
    assert read_labeled_texts(tsv) == [LabeledText("great", 1)]


def test_a_missing_data_file_is_named_by_its_setting(tmp_path):
    from training.config import load_config
    from training.tasks import ner, sentiment, translation

    own = [f"data.datasets_dir={tmp_path}"]
    cases = [
        (ner.load_data, "ner", [], "data.train_file='conll2003/train.txt'"),
        (translation.load_data, "translation", [], "data.train_src='multi30k/train.en'"),
        (
            sentiment.load_data,
            "sentiment",
            ["data.use_sst=false", "data.use_imdb=false", "data.dev_file=../dev.tsv"],
            "data.dev_file='../dev.tsv'",
        ),
    ]
    for load, task, settings, setting in cases:
        config = load_config(task, overrides=[*own, *settings])
        with pytest.raises(DataError) as missing:
            load(config)
        assert str(missing.value).startswith(f"{setting}: {tmp_path}/")
        assert f"relative to data.datasets_dir='{tmp_path}', or absolute" in str(missing.value)

    config = load_config("sentiment", overrides=own)
    with pytest.raises(DataError, match="must be the folder of the shared data sets"):
        sentiment.load_data(config)


def test_a_missing_glove_file_is_named_by_its_setting(tmp_path):
    from training.embeddings import glove_file

    with pytest.raises(DataError, match=r"vocab.glove_path='g.txt': .* vocab.glove_path=none"):
        glove_file(str(tmp_path), "g.txt")
    assert glove_file(str(tmp_path), "g.txt", must_exist=False) == tmp_path / "g.txt"
    assert glove_file(str(tmp_path), None) is None


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_a_conll_file_without_sentences_is_refused(tmp_path, content):
    path = tmp_path / "empty.conll"
    path.write_text(content, "utf-8")
    with pytest.raises(DataError, match=r"empty.conll: no sentences"):
        read_conll(path)


def test_a_text_held_out_is_never_trained_on_even_when_it_is_repeated():
    # IMDB's training file holds some reviews twice: a copy left in training would leak.
    records = [LabeledText(f"review {i % 30}", i % 2) for i in range(60)]  # each text twice

    train, held_out = split_holdout(records, size=10, seed=3)

    assert len(held_out) == 10
    assert not {r.text for r in train} & {r.text for r in held_out}
    assert split_holdout(records, size=10, seed=3) == (train, held_out)  # the seed decides
