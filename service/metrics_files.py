"""The files of prometheus_client's multiprocess mode, kept bounded as workers come and go.

Every worker writes its metrics to files of its own in PROMETHEUS_MULTIPROC_DIR (named
``<type>_<pid>.db``; gauges ``gauge_<mode>_<pid>.db``). prometheus_client removes a dead
worker's live gauges only; its counters, histograms and max gauges must stay, since /metrics
adds up every file, so the folder (in memory: /dev/shm) grows with every worker that ever ran,
and every scrape reads more. :func:`archive_dead_worker`, called by gunicorn's master when a
worker exits, adds a dead worker's values into one archive file per kind and removes its files:
the sums that /metrics shows stay the same, and the folder holds the live workers' files plus
the archive. Only the master writes the archive, one exit at a time.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from pathlib import Path

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

ARCHIVE = "archive"
# The kinds of file whose values outlive their worker, and how two of their values combine.
_MERGED: dict[str, Callable[[float, float], float]] = {
    "counter": operator.add,
    "histogram": operator.add,
    "summary": operator.add,
    "gauge_sum": operator.add,
    "gauge_max": max,
    "gauge_min": min,
}


def archive_dead_worker(pid: int, folder: str | Path | None = None) -> None:
    """Forget a worker that exited: its live gauges go (prometheus_client's
    ``mark_process_dead``), and its other values join the archive."""
    folder = Path(folder or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    multiprocess.mark_process_dead(pid, str(folder))
    for kind, combine in _MERGED.items():
        dead = folder / f"{kind}_{pid}.db"
        if not dead.is_file():
            continue
        archive = MmapedDict(str(folder / f"{kind}_{ARCHIVE}.db"))
        try:
            kept = {key: value for key, value, _ in archive.read_all_values()}
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                merged = combine(kept[key], value) if key in kept else value
                archive.write_value(key, merged, timestamp)
        finally:
            archive.close()
        dead.unlink()
