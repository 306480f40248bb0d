"""Readers for the standard data formats under ../shared/datasets.

Each reader returns plain Python records; turning text into ids is the job of
``service.text``, shared with the service.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from training.errors import DataError

SENTIMENT_LABELS = ["negative", "positive"]
CONLL_ENTITY_TYPES = ["PER", "ORG", "LOC", "MISC"]
DOCSTART = "-DOCSTART-"

TaggedSentence = list[tuple[str, str]]  # (token, tag) pairs

# PTB escapes used by the SST trees.
_PTB_UNESCAPE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_IMDB_LABELS = {"neg": 0, "pos": 1}
# Labels accepted in your own sentiment data (read_labeled_texts), case-insensitive.
_OWN_LABELS = {"0": 0, "1": 1, "negative": 0, "positive": 1, "neg": 0, "pos": 1}
_OWN_HEADERS = {"text", "sentence"}
_TREE_LEAF_RE = re.compile(r"\(\d ([^()\s]+)\)")


@dataclass(frozen=True, slots=True)
class LabeledText:
    text: str
    label: int  # index into SENTIMENT_LABELS


def dataset_file(datasets_dir: str | Path, path: str | Path, setting: str, hint: str = "") -> Path:
    """``path``, the value of the config's ``setting``, under ``datasets_dir`` (an absolute path
    stays as it is); a file that is not there is a DataError naming the setting and the rule,
    then ``hint``."""
    full = Path(datasets_dir) / path
    if not full.is_file():
        raise DataError(
            f"{setting}={str(path)!r}: {full} is not a file (data paths are relative to "
            f"data.datasets_dir={str(datasets_dir)!r}, or absolute{hint})"
        )
    return full


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, line ends removed (a last line end is not a line)."""
    lines = read_text(path).split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_text(path: Path) -> str:
    """A UTF-8 file's text (a byte order mark at its start dropped); a file that is not UTF-8
    raises DataError with the line."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


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


def read_labeled_texts(path: Path) -> list[LabeledText]:
    """Your own labelled texts for the sentiment model.

    JSON Lines (``{"text": "...", "label": "positive"}`` per line) when the file name ends in
    ``.jsonl``, else TSV: ``text<TAB>label`` per line, the label being the last field, and a
    first line ``text<TAB>label`` (or GLUE's ``sentence<TAB>label``) read as a header. Labels
    are ``0``/``1``, ``negative``/``positive`` or ``neg``/``pos`` (any case); blank lines are
    skipped. Anything else raises DataError naming the file and line.
    """
    jsonl = Path(path).suffix.lower() == ".jsonl"
    records = []
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if jsonl:
            text, label = _json_example(line, where)
        else:
            text, tab, label = line.rstrip("\r\n").rpartition("\t")
            if not tab:
                hint = ""
                if line.lstrip().startswith("{"):
                    hint = "; a file of JSON objects, one a line, needs a name ending in .jsonl"
                raise DataError(f"{where}: expected 'text<TAB>label', got {line[:80]!r}{hint}")
            header = text.strip().lower() in _OWN_HEADERS and label.strip().lower() == "label"
            if number == 1 and header:
                continue
        if not isinstance(text, str):
            raise DataError(f"{where}: the text is not a string: {json.dumps(text)[:80]}")
        if not text.strip():
            raise DataError(f"{where}: the text is empty")
        key = str(label).strip().lower()
        if key not in _OWN_LABELS:
            first = str(text).strip().lower()  # a label (or a "label" header) first: swapped
            swapped = not jsonl and (first in _OWN_LABELS or first == "label")
            hint = ""
            if swapped:
                hint = "; the label comes last: text<TAB>label"
            elif not jsonl and not key:
                hint = "; the line ends with a TAB: the label is the last field"
            raise DataError(
                f"{where}: unknown label {label!r}; use one of 0/1, negative/positive, neg/pos"
                + hint
            )
        records.append(LabeledText(text.strip(), _OWN_LABELS[key]))
    return records


def _json_example(line: str, where: str) -> tuple[object, object]:
    try:
        example = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not a JSON object: {exc}") from None
    if not isinstance(example, dict) or "text" not in example or "label" not in example:
        raise DataError(f'{where}: expected {{"text": ..., "label": ...}}, got {line[:80]!r}')
    return example["text"], example["label"]


def iob2_tags(entity_types: list[str]) -> list[str]:
    """The IOB2 tags of ``entity_types``, in the order of an NER model's outputs: ``O``, then
    ``B-`` and ``I-`` of each type."""
    return ["O"] + [f"{prefix}-{kind}" for kind in entity_types for prefix in ("B", "I")]


# CoNLL-2003 NER tags (IOB2), in the order of the committed model's outputs.
NER_TAGS = iob2_tags(CONLL_ENTITY_TYPES)
_IOB2_TAG_RE = re.compile(r"O|[BI]-\S+")


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
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        columns = line.split()
        if columns and columns[0] != DOCSTART:
            if len(columns) < 2:
                raise DataError(f"{path}:{number}: expected 'token ... tag', got {line!r}")
            previous = current[-1][1] if current else "O"
            if not _IOB2_TAG_RE.fullmatch(columns[-1]):
                raise DataError(
                    f"{path}:{number}: tag {columns[-1]!r} is not O, B-TYPE or I-TYPE (the "
                    "last column holds the IOB2 tag)"
                )
            _require_iob2(columns[-1], previous, f"{path}:{number}")
            current.append((columns[0], columns[-1]))
        elif current:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    if not sentences:
        raise DataError(f"{path}: no sentences ('token ... tag' lines, a blank line after each)")
    return sentences


def _require_iob2(tag: str, previous: str, where: str) -> None:
    """Raise if ``tag`` is an ``I-X`` that starts an entity (``previous`` is not B-X or I-X)."""
    if not tag.startswith("I-") or previous[2:] == tag[2:]:
        return
    if previous.startswith(("B-", "I-")):  # inside an entity of another type
        raise DataError(
            f"{where}: tag {tag!r} cannot follow {previous!r}: I- continues an entity of its "
            "own type, and in IOB2 a new entity starts with B-; fix the tag, or, if the file is "
            "IOB1, convert it to IOB2 first"
        )
    raise DataError(
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
