"""Formatting and lookups shared by the report's parts."""

from __future__ import annotations

import math


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with thousands separators and ``digits`` decimals; ``n/a`` if not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def load_level(results: dict, server: str, concurrency: int) -> dict | None:
    """One server's HTTP load level at ``concurrency``; None if the run has none."""
    for row in results.get("http", {}).get("load", []):
        if row["server"] == server and row["concurrency"] == concurrency:
            return row
    return None


def model_label(model: str, variant: str = "") -> str:
    """A model, with the in-process variant where it has several (translation (greedy))."""
    return f"{model} ({variant})" if variant else model
