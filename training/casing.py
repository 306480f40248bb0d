"""Ways a user may write a sentence other than in sentence case, to measure how a model copes
(``python -m training evaluate {ner,translation} --source-case``)."""

from collections.abc import Callable

# Kept in small letters by headline style (AP, Chicago): articles, and the conjunctions and
# prepositions of three letters or fewer.
SMALL_WORDS = frozenset(
    {"a", "an", "the", "and", "but", "or", "nor", "for", "so", "yet"}
    | {"as", "at", "by", "in", "of", "off", "on", "out", "per", "to", "up", "via"}
)


def _capitalized(word: str) -> str:
    return word[:1].upper() + word[1:]


def headline(text: str) -> str:
    """Headline style: every word capitalized but the small words after the first ("A Man in a Blue
    Shirt Is Playing the Guitar")."""
    words = text.split(" ")
    return " ".join(
        word if index and word in SMALL_WORDS else _capitalized(word)
        for index, word in enumerate(words)
    )


SOURCE_CASES: dict[str, Callable[[str], str]] = {
    "as-written": str,  # to compare with, scored the same way
    "upper": str.upper,
    "lower": str.lower,
    "title": lambda text: " ".join(_capitalized(word) for word in text.split(" ")),
    "headline": headline,
}
