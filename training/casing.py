"""Ways a user may write a sentence other than in sentence case, to measure how a model copes
(``python -m training evaluate {ner,translation} --source-case``)."""

from collections.abc import Callable

SOURCE_CASES: dict[str, Callable[[str], str]] = {
    "as-written": str,  # to compare with, scored the same way
    "upper": str.upper,
    "lower": str.lower,
    "title": lambda text: " ".join(word[:1].upper() + word[1:] for word in text.split(" ")),
}
