"""A token vocabulary stored as JSON (never pickled, never rebuilt at inference time)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from service.text.constants import PAD_TOKEN, UNK_TOKEN


class Vocab:
    """Maps tokens to ids. Id 0 is padding and id 1 the unknown token."""

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:2]) != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError(f"a vocabulary must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary must not contain duplicate tokens")
        self.tokens: list[str] = list(tokens)
        self._index = {token: i for i, token in enumerate(self.tokens)}

    pad_id = 0
    unk_id = 1

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    def lookup(self, token: str) -> int:
        return self._index.get(token, self.unk_id)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self._index.get(token, self.unk_id) for token in tokens]

    @classmethod
    def build(
        cls,
        counts: Counter[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        extra: Iterable[str] = (),
    ) -> Vocab:
        """Build from token counts: most frequent first (ties alphabetical), then ``extra``.

        ``max_size`` counts the two special tokens; ``extra`` tokens (for instance frequent
        words of a pre-trained embedding) fill the remaining room in the order given.
        """
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        tokens = [PAD_TOKEN, UNK_TOKEN]
        seen = set(tokens)
        for token in [*ranked, *extra]:
            if max_size is not None and len(tokens) >= max_size:
                break
            if token not in seen:
                tokens.append(token)
                seen.add(token)
        return cls(tokens)

    def to_json(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"tokens": self.tokens}, ensure_ascii=False), "utf-8")

    @classmethod
    def from_json(cls, path: Path) -> Vocab:
        return cls(json.loads(Path(path).read_text("utf-8"))["tokens"])
