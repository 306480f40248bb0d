"""The data readers' behaviour on files a user writes: encodings and line ends."""

import pytest

from training.data import DataError, LabeledText, read_conll, read_labeled_texts, read_lines
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
