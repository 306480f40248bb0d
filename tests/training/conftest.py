"""A tiny copy of the datasets layout, written from templates, for fast end-to-end training."""

import gzip
import random
from pathlib import Path

import numpy as np
import pytest

POSITIVE = ["great", "wonderful", "moving", "brilliant", "charming", "funny"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "tedious", "bland"]
FILLER = ["the", "film", "is", "a", "story", "and", "acting", "was", "plot", "."]


def _sentence(rng: random.Random, words: list[str], length: int) -> str:
    return " ".join(rng.choice(FILLER + words) for _ in range(length)) + " " + rng.choice(words)


def write_tiny_datasets(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    (root / "sst/sst2_glue").mkdir(parents=True)
    (root / "imdb").mkdir(parents=True)
    (root / "glove").mkdir(parents=True)
    for split, count in [("train", 300), ("dev", 40)]:
        lines = ["sentence\tlabel"]
        for i in range(count):
            label = i % 2
            lines.append(
                f"{_sentence(rng, POSITIVE if label else NEGATIVE, rng.randint(2, 8))} \t{label}"
            )
        (root / f"sst/sst2_glue/{split}.tsv").write_text("\n".join(lines) + "\n", "utf-8")
        trees = []  # the same sentences as PTB trees (label 0 or 4 at the root)
        for line in lines[1:]:
            sentence, _, label = line.rpartition("\t")
            leaves = " ".join(f"(2 {word})" for word in sentence.split())
            trees.append(f"({int(label) * 4} {leaves})")
        (root / "sst/trees").mkdir(parents=True, exist_ok=True)
        (root / f"sst/trees/{split}.txt").write_text("\n".join(trees) + "\n", "utf-8")
    reviews = []
    for i in range(120):
        label = ["neg", "pos"][i % 2]
        text = _sentence(rng, POSITIVE if label == "pos" else NEGATIVE, rng.randint(20, 60))
        reviews.append(f"{label}\t{text.capitalize()}<br /><br />{_sentence(rng, FILLER, 5)}")
    (root / "imdb/train.tsv").write_text("\n".join(reviews) + "\n", "utf-8")
    vectors = np.random.default_rng(seed).normal(size=(len(POSITIVE + NEGATIVE + FILLER), 50))
    with gzip.open(root / "glove/glove.6B.50d.txt.gz", "wt", encoding="utf-8") as handle:
        for word, vector in zip(POSITIVE + NEGATIVE + FILLER, vectors, strict=True):
            handle.write(word + " " + " ".join(f"{v:.5f}" for v in vector) + "\n")
    return root


def tiny_sentiment_settings(datasets: Path) -> list[str]:
    """``--set`` values for a small sentiment model trained fast on :func:`write_tiny_datasets`."""
    return [
        f"data.datasets_dir={datasets}",
        f"vocab.glove_path={datasets}/glove/glove.6B.50d.txt.gz",
        "data.imdb_holdout=20",
        "trainer.threads=1",
        "model.hidden_size=16",
        "max_tokens=40",
    ]


def as_set_options(settings: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [a for s in settings for a in ("--set", s)]


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory) -> Path:
    return write_tiny_datasets(tmp_path_factory.mktemp("datasets"))


@pytest.fixture
def moved_checkpoint(tmp_path):
    """Copy a checkpoint as another machine would see it: the datasets folder its config
    records (an absolute path) does not exist there."""

    def move(checkpoint: Path) -> Path:
        import torch

        state = torch.load(checkpoint, weights_only=True)
        state["config"]["data"]["datasets_dir"] = str(tmp_path / "no-such-datasets")
        moved = tmp_path / "moved.pt"
        torch.save(state, moved)
        return moved

    return move
