"""A dead worker's metrics files join an archive: /metrics shows the same sums, and the folder
no longer grows with every worker that ever ran."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from service.metrics_files import archive_dead_worker
from tests.service.metrics_text import sample_values

WORKER = """
from prometheus_client import Counter, Gauge, Histogram
Counter("requests", "r", ["model"]).labels("sentiment").inc({n})
Histogram("latency_seconds", "l").observe({n} / 10)
Gauge("last_seconds", "t", multiprocess_mode="max").set({n})
Gauge("resident_bytes", "m", multiprocess_mode="liveall").set({n})
import os; print(os.getpid())
"""


def run_worker(folder: Path, n: int) -> int:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    code = WORKER.format(n=n)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    return int(done.stdout)


def scrape(folder: Path) -> dict:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return sample_values(generate_latest(registry).decode())


def test_dead_workers_values_are_kept_in_an_archive(tmp_path: Path) -> None:
    pids = [run_worker(tmp_path, n) for n in (3, 5, 4)]
    before = scrape(tmp_path)

    for pid in pids:
        archive_dead_worker(pid, tmp_path)
    after = scrape(tmp_path)

    dropped = {key for key in before if key[0] == "resident_bytes"}  # live gauges only
    assert len(dropped) == 3 and not any(key[0] == "resident_bytes" for key in after)
    assert after == pytest.approx({k: v for k, v in before.items() if k not in dropped})
    assert after[("requests_total", frozenset({("model", "sentiment")}))] == 12
    assert after[("last_seconds", frozenset())] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_archive.db",
        "gauge_max_archive.db",
        "histogram_archive.db",
    ]
