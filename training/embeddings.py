"""GloVe text-format reader -> an embedding matrix aligned with a vocabulary."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from service.text import Vocab
from training.data import DataError, dataset_file

log = logging.getLogger(__name__)


def glove_file(
    datasets_dir: str, glove_path: str | None, *, must_exist: bool = True
) -> Path | None:
    """The GloVe file of a config's ``vocab.glove_path`` (relative to its datasets folder, or
    absolute); None when it is None: embeddings then start random and nothing fills the
    vocabulary (data in a language GloVe does not cover). A file that is not there is a
    DataError naming the setting, unless ``must_exist`` is false."""
    if glove_path is None:
        return None
    if not must_exist:
        return Path(datasets_dir) / glove_path
    hint = "; vocab.glove_path=none starts the embeddings at random"
    return dataset_file(datasets_dir, glove_path, "vocab.glove_path", hint)


def iter_glove(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(word, vector)`` in file order (GloVe files are sorted by frequency)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            word, _, rest = line.rstrip("\n").partition(" ")
            yield word, np.array(rest.split(" "), dtype=np.float32)


def glove_words(path: Path, limit: int | None = None) -> list[str]:
    words = []
    for word, _ in iter_glove(path):
        words.append(word)
        if limit is not None and len(words) >= limit:
            break
    return words


def embedding_matrix(
    vocab: Vocab, path: Path, dim: int, seed: int = 0, setting: str = "the embedding size"
) -> np.ndarray:
    """Rows from GloVe for known words (lower-cased lookup); small random rows otherwise.

    The padding row is zero. Vectors of another size than ``dim`` are a :class:`DataError`
    naming ``setting``, the setting that gave ``dim``.
    """
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, 0.1, size=(len(vocab), dim)).astype(np.float32)
    wanted: dict[str, list[int]] = {}
    for index, token in enumerate(vocab.tokens[2:], start=2):
        wanted.setdefault(token.lower(), []).append(index)
    found = 0
    for word, vector in iter_glove(path):
        if word in wanted:
            if vector.shape[0] != dim:
                raise DataError(
                    f"{path}: vectors have {vector.shape[0]} dimensions, {setting}={dim}: "
                    f"set {setting}={vector.shape[0]}, or another vocab.glove_path"
                )
            for index in wanted.pop(word):
                matrix[index] = vector
                found += 1
    matrix[vocab.pad_id] = 0.0
    log.info("GloVe covers %d of %d vocabulary entries", found, len(vocab) - 2)
    return matrix
