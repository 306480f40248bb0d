"""Readers for the standard data formats under ../shared/datasets.

Each reader returns plain Python records; turning text into ids is the job of
``service.text``, shared with the service.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

SENTIMENT_LABELS = ["negative", "positive"]
# CoNLL-2003 NER tags (IOB2), in the order of the model's outputs.
NER_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
DOCSTART = "-DOCSTART-"

TaggedSentence = list[tuple[str, str]]  # (token, tag) pairs

# PTB escapes used by the SST trees.
_PTB_UNESCAPE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_IMDB_LABELS = {"neg": 0, "pos": 1}
_TREE_LEAF_RE = re.compile(r"\(\d ([^()\s]+)\)")


@dataclass(frozen=True, slots=True)
class LabeledText:
    text: str
    label: int  # index into SENTIMENT_LABELS


def read_sst2_tsv(path: Path) -> list[LabeledText]:
    """GLUE SST-2: ``sentence<TAB>label`` with a header line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            sentence, _, label = line.rstrip("\n").rpartition("\t")
            records.append(LabeledText(sentence.strip(), int(label)))
    return records


def read_sst_trees_binary(path: Path) -> list[LabeledText]:
    """Whole sentences of the SST PTB trees with binary labels (neutral sentences dropped)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            label = int(line[1])
            if label == 2:
                continue
            words = [
                _PTB_UNESCAPE.get(w, w).replace("\\/", "/") for w in _TREE_LEAF_RE.findall(line)
            ]
            records.append(LabeledText(" ".join(words), int(label > 2)))
    return records


def read_imdb_tsv(path: Path) -> list[LabeledText]:
    """aclImdb as ``label<TAB>text`` with labels ``pos``/``neg`` and no header."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            label, _, text = line.rstrip("\n").partition("\t")
            records.append(LabeledText(text, _IMDB_LABELS[label]))
    return records


def read_conll(path: Path) -> list[TaggedSentence]:
    """CoNLL column files: ``token ... tag`` per line (first and last column), blank lines
    between sentences; ``-DOCSTART-`` lines are document boundaries, not sentences.

    Tags must be IOB2 (every entity starts with ``B-``), the scheme the model and the strict
    seqeval scores use: an IOB1 file (the original CoNLL-2003 release) is refused at its first
    entity that starts with ``I-``, since reading it as IOB2 would silently split and miscount
    entities.
    """
    sentences: list[TaggedSentence] = []
    current: TaggedSentence = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            columns = line.split()
            if columns and columns[0] != DOCSTART:
                if len(columns) < 2:
                    raise ValueError(f"{path}:{number}: expected 'token ... tag', got {line!r}")
                previous = current[-1][1] if current else "O"
                _require_iob2(columns[-1], previous, f"{path}:{number}")
                current.append((columns[0], columns[-1]))
            elif current:
                sentences.append(current)
                current = []
    if current:
        sentences.append(current)
    return sentences


def _require_iob2(tag: str, previous: str, where: str) -> None:
    """Raise if ``tag`` is an ``I-X`` that starts an entity (``previous`` is not B-X or I-X)."""
    if tag.startswith("I-") and previous[2:] != tag[2:]:
        raise ValueError(
            f"{where}: tag {tag!r} after {previous!r} starts an entity with I-: the file looks "
            "like IOB1, and NER needs IOB2 tags (every entity starts with B-); convert it to "
            "IOB2 first"
        )


def split_holdout(records: list[LabeledText], size: int, seed: int) -> tuple[list, list]:
    """Shuffle with a fixed seed; return ``(train, held_out)`` with ``size`` held out."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[:size])
    held_out = [records[i] for i in order[:size]]
    # Duplicate texts (IMDB has some) must not leak from the held-out part into training.
    held_texts = {r.text for r in held_out}
    train = [r for i, r in enumerate(records) if i not in held and r.text not in held_texts]
    return train, held_out
