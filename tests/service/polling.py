"""Waiting in tests for what other threads do."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Poll ``condition`` (e.g. that other threads' rows are queued) for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
