"""The letter case a model trained on sentence-case text can read (a truecaser).

The translation model learned from captions in sentence case: a capital on the first word and on
names, nothing else. A sentence in capitals ("A MAN IS RIDING A BIKE."), in title case ("A Man Is
Riding A Bike.") or in small letters only reads to it as rare subwords, and it answered garbage.
Such a sentence is rewritten before it is encoded: each word takes the form it has most often
inside the training sentences (not at their start), or next to the word beside it where that
pair is frequent ("new" is "New" before "york"), and the first word takes a capital; a word the
training data never had inside a sentence is written in small letters. This is the classic
frequency truecaser (Lita et al., 2003; Moses' ``truecase.perl``). A sentence in ordinary case is
left as it is written: its capitals are the writer's information (names), not noise. The NER
model uses the same truecaser for sentences in small letters only (see :class:`Truecaser`).

The tables hold only the words, and the pairs, whose usual form is not all small letters (names,
"I"). They are learned from the training sentences when the model is trained, kept in the
checkpoint and shipped as JSON in the artifact.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path

WORD = re.compile(r"[^\W\d_]+")  # a run of letters
_ALNUM = re.compile(r"[^\W_]")  # a letter or a digit
# The share of words that makes a sentence one in capitals (of its words of two letters or
# more: "A MAN IS RUNNING 5 km" has 3 of 4) or in title case (of its words of four letters or
# more after the first, since headline style keeps "a", "in", "the" small: "A Man in a Blue
# Shirt Is Playing the Guitar" has 4 of 4).
SHARE = 0.75


class Casing(StrEnum):
    """How a sentence is cased, judged on its words that have case."""

    ORDINARY = "ordinary"  # sentence case, or too few words to tell
    UPPER = "upper"  # (nearly) every word in capitals
    LOWER = "lower"  # no capital but in acronyms, or in "I" after the first word
    TITLE = "title"  # (nearly) every word after the first starts with a capital


def casing(sentence: str) -> Casing:
    """The casing of ``sentence``; one cased word alone (an acronym, a name) is ordinary.

    Title case needs either three words of four letters or more after the first, nearly all
    capitalized, or two and every word after the first capitalized: "Welcome to New York City"
    stays ordinary, "Two Dogs Play" does not."""
    words = [word for word in WORD.findall(sentence) if word.lower() != word.upper()]
    if len(words) < 2:
        return Casing.ORDINARY
    longer = [word for word in words if len(word) > 1]
    in_capitals = sum(word.isupper() for word in longer)
    if all(word.isupper() for word in words) or (
        len(longer) >= 2 and in_capitals >= SHARE * len(longer)
    ):
        return Casing.UPPER
    telling = [words[0], *(word for word in words[1:] if not word.isupper())]
    if len(telling) >= 2 and not any(char.isupper() for word in telling for char in word):
        return Casing.LOWER
    rest = words[1:]
    long = [word for word in rest if len(word) >= 4]
    capitalized = sum(word[0].isupper() for word in long)
    if (len(long) >= 3 and capitalized >= SHARE * len(long)) or (
        len(long) >= 2 and all(word[0].isupper() for word in rest)
    ):
        return Casing.TITLE
    return Casing.ORDINARY


ALL_REWRITES = frozenset({Casing.UPPER, Casing.TITLE, Casing.LOWER})
TABLES = ("forms", "followed", "preceded")  # the truecaser's JSON: its three tables
MIN_PAIR_COUNT = 2  # a pair of words seen once says too little about its case


class Truecaser:
    """Rewrites a sentence whose casing is one of ``rewrites`` in the case of the training text.

    Which casings to rewrite depends on what the model learned from: a translation model that
    read sentence case only needs all three; an NER model trained on news with headlines in
    capitals and title case reads those better as written, and needs only small letters
    rewritten.

    A word takes its usual form (``forms``), unless the training sentences usually write it
    otherwise before the word that follows it here (``followed``: "new" is "New" before "york")
    or after the word that comes before it (``preceded``: "major" is "Major" after "john"). The
    pairs are kept only where seen at least :data:`MIN_PAIR_COUNT` times."""

    def __init__(
        self,
        forms: Mapping[str, str],
        rewrites: Iterable[Casing] = ALL_REWRITES,
        *,
        followed: Mapping[str, str] | None = None,
        preceded: Mapping[str, str] | None = None,
    ):
        # small-letter word -> its usual form, for the words whose usual form has a capital
        self.forms = dict(forms)
        # "word next" / "previous word" (small letters) -> the word's form there, where it
        # differs from its usual one
        self.followed = dict(followed or {})
        self.preceded = dict(preceded or {})
        self.rewrites = frozenset(rewrites)

    @classmethod
    def fit(cls, sentences: Iterable[str]) -> Truecaser:
        """Count the forms of every word inside ``sentences`` of ordinary case (the first word
        of each is left out: its capital says nothing about the word), alone and next to its
        neighbours, and keep the usual ones with a capital. Headlines and tables, in capitals
        or in title case, say nothing about a word's case either: counted, they made common
        words of news ("joins") usually "JOINS"."""
        alone: defaultdict[str, Counter[str]] = defaultdict(Counter)
        before: defaultdict[str, Counter[str]] = defaultdict(Counter)
        after: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for sentence in sentences:
            if casing(sentence) is not Casing.ORDINARY:
                continue
            words = WORD.findall(sentence)
            keys = [word.lower() for word in words]
            for index in range(1, len(words)):
                word = words[index]
                alone[keys[index]][word] += 1
                if index + 1 < len(words):
                    before[f"{keys[index]} {keys[index + 1]}"][word] += 1
                after[f"{keys[index - 1]} {keys[index]}"][word] += 1
        forms = {key: form for key, seen in alone.items() if (form := _usual(key, seen)) != key}

        def pairs(counts: Mapping[str, Counter[str]], word_of: Callable[[str], str]):
            found = {}
            for pair, seen in counts.items():
                key = word_of(pair)
                form = _usual(key, seen)
                if seen[form] >= MIN_PAIR_COUNT and form != forms.get(key, key):
                    found[pair] = form
            return dict(sorted(found.items()))

        return cls(
            dict(sorted(forms.items())),
            followed=pairs(before, lambda pair: pair.partition(" ")[0]),
            preceded=pairs(after, lambda pair: pair.partition(" ")[2]),
        )

    @classmethod
    def from_json(cls, path: Path, rewrites: Iterable[Casing] = ALL_REWRITES) -> Truecaser:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a truecaser table: {exc}") from None
        try:
            return cls.from_tables(data, rewrites)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_tables(cls, data: object, rewrites: Iterable[Casing] = ALL_REWRITES) -> Truecaser:
        """From :meth:`tables`' dict (a checkpoint's, or the JSON file's), checked."""
        tables = [data.get(name, {}) for name in TABLES] if isinstance(data, dict) else None
        if (
            tables is None
            or "forms" not in data
            or not all(_is_table(t, w) for t, w in zip(tables, (0, 0, -1), strict=True))
        ):
            raise ValueError(
                "not a truecaser table: expected {'forms': {small-letter word: its usual form}, "
                "'followed': {'word next': form}, 'preceded': {'previous word': form}}"
            )
        forms, followed, preceded = tables
        return cls(forms, rewrites, followed=followed, preceded=preceded)

    def tables(self) -> dict[str, dict[str, str]]:
        """The three tables, as the JSON file and a checkpoint keep them."""
        return {"forms": self.forms, "followed": self.followed, "preceded": self.preceded}

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.tables(), ensure_ascii=False), "utf-8")

    def restore(self, sentence: str) -> str:
        """``sentence`` in its usual case, or unchanged unless its casing is to be rewritten."""
        return self.restore_parts([sentence])[0]

    def restore_parts(self, parts: Sequence[str]) -> list[str]:
        """The parts of one sentence (its tokens, say), as :meth:`restore` would write the
        sentence they make joined by spaces, but each on its own: a token keeps its place."""
        kind = casing(" ".join(parts))
        if kind not in self.rewrites:
            return list(parts)
        found = [list(WORD.finditer(part)) for part in parts]
        words = [match[0] for matches in found for match in matches]
        # In small letters, the words written with capitals (acronyms, "I") stay as they are.
        forms = iter(self._forms(words, keep_capitals=kind is Casing.LOWER))
        restored, begun = [], False  # begun: a letter or a digit has come
        for part, matches in zip(parts, found, strict=True):
            lead = None if begun else _ALNUM.search(part)  # where the sentence begins
            pieces, end = [], 0
            for match in matches:
                form = next(forms)
                # A capital for the first word only when it begins the sentence (after any
                # spaces and punctuation, such as an opening quote): "2 men sit." stays.
                if lead is not None and lead.start() == match.start():
                    form = form[:1].upper() + form[1:]
                pieces += [part[end : match.start()], form]
                end = match.end()
            restored.append("".join(pieces) + part[end:])
            begun = begun or lead is not None
        return restored

    def _forms(self, words: Sequence[str], keep_capitals: bool) -> list[str]:
        """The form of each of a sentence's words: by the word next to it, else its usual one."""
        keys = [word.lower() for word in words]
        forms = []
        for index, (word, key) in enumerate(zip(words, keys, strict=True)):
            if keep_capitals and word != key:
                forms.append(word)
                continue
            form = None
            if index + 1 < len(keys):
                form = self.followed.get(f"{key} {keys[index + 1]}")
            if form is None and index > 0:
                form = self.preceded.get(f"{keys[index - 1]} {key}")
            forms.append(form or self.forms.get(key, key))
        return forms


def _usual(key: str, seen: Counter[str]) -> str:
    """The most frequent of a word's forms; on a tie, the one in small letters."""
    return max(seen, key=lambda form: (seen[form], form == key, form))


def _is_table(table: object, word: int) -> bool:
    """A mapping of keys in small letters (a word, or two joined by a space) to forms of their
    ``word``-th word."""
    return isinstance(table, dict) and all(
        isinstance(k, str)
        and isinstance(v, str)
        and k.split(" ")[word] == v.lower()
        and k == k.lower()
        for k, v in table.items()
    )
