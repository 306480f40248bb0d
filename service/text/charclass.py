"""Regex character classes built from a Unicode predicate, readable alike by Python's ``re`` and
ECMA-262 (JSON Schema patterns)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


def char_class(
    predicate: Callable[[str], bool], codes: Iterable[int] = range(sys.maxunicode + 1)
) -> str:
    """The members of a regex character class holding every code point of ``codes``
    (surrogates aside) for which ``predicate`` holds, as ranges (``\\uXXXX`` escapes, astral
    characters as such). ``codes`` in increasing order; all of Unicode by default."""
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if 0xD800 <= code <= 0xDFFF or not predicate(chr(code)):
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))

    def escape(code: int) -> str:  # the escape means the same in Python's re and ECMA-262
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(escape(a) if a == b else f"{escape(a)}-{escape(b)}" for a, b in ranges)
