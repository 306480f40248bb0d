"""Hot reload under gunicorn with two workers: every worker serves the new model soon after."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.service.conftest import ADMIN_KEY
from tests.service.live_server import free_port, http_json, running_server
from tests.service.test_reload import set_version

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]


@pytest.mark.slow
def test_a_reload_reaches_every_worker(own_model_dir: Path, tmp_path: Path) -> None:
    names = {"WEB_CONCURRENCY", "PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR", "RELOAD_SIGNAL_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in names and k != "MODELS"}
    port = free_port()
    env |= {"PORT": str(port), "WEB_CONCURRENCY": "2", "MODEL_DIR": str(own_model_dir)}
    env["ADMIN_API_KEYS"] = ADMIN_KEY

    def versions(server_url: str) -> set[str]:
        def one(_: int) -> str:
            body = {"texts": ["good"]}
            status, body = http_json("POST", f"{server_url}/v1/sentiment", body, key=ADMIN_KEY)
            assert status == 200, body
            return body["model"]["version"]

        with ThreadPoolExecutor(8) as pool:
            return set(pool.map(one, range(32)))

    with running_server(GUNICORN, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path) as server:
        server.wait_for_workers(2, "sentiment")
        assert versions(server.url) == {"0.0.1-test"}
        set_version(own_model_dir / "sentiment", "2.0.0")

        url = f"{server.url}/v1/models/sentiment/reload"
        status, body = http_json("POST", url, key=ADMIN_KEY)
        assert status == 200, body
        deadline = time.monotonic() + 10
        while len(server.pids_logging(RELOADED)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = versions(server.url)

    assert len(server.pids_logging(RELOADED)) == 2, server.logs()  # the one asked, the other
    assert seen == {"2.0.0"}


RELOADED = "model 'sentiment' reloaded: 0.0.1-test -> 2.0.0"
