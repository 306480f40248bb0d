"""Graceful shutdown: on SIGTERM, gunicorn stops accepting and in-flight requests finish."""

from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.service.live_server import free_port, http_json, running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(tiny_model_dir: Path, tmp_path: Path) -> None:
    names = {"WEB_CONCURRENCY", "PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR", "MODELS"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    port = free_port()
    env |= {
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "MODEL_DIR": str(tiny_model_dir),
        # A lone request waits a whole second in the batcher for others to join it.
        "BATCH_MAX_SIZE": "64",
        "BATCH_MAX_QUEUE_DELAY_MS": "1000",
    }
    with running_server(GUNICORN, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path) as server:
        assert server.process is not None
        with ThreadPoolExecutor(3) as pool:
            in_flight = [
                pool.submit(http_json, "POST", f"{server.url}/v1/sentiment", {"texts": [t]})
                for t in ("good", "bad", "great")
            ]
            time.sleep(0.4)  # the requests are now waiting in the batcher
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)

            answers = [future.result(10) for future in in_flight]
        exit_code = server.process.wait(30)
        elapsed = time.monotonic() - started

        with pytest.raises(OSError):  # nothing listens any more
            http_json("GET", f"{server.url}/v2/health/live", timeout=2)

    assert [status for status, _ in answers] == [200, 200, 200], server.logs()
    assert [body["results"][0]["label"] for _, body in answers] == [
        "positive",
        "negative",
        "positive",
    ]
    assert exit_code == 0
    assert elapsed < 25  # well within graceful_timeout
