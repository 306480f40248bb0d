"""Reading Prometheus text exposition in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample_values(text: str) -> dict[tuple[str, frozenset], float]:
    """``(sample name, frozenset of label items) -> value`` for every sample in ``text``."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value, 0 when absent (a counter that never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
