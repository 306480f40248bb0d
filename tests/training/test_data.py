"""The data readers' behaviour on files a user writes: encodings and line ends."""

import pytest

from training.data import DataError, read_conll, read_labeled_texts, read_lines
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
