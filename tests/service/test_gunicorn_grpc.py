"""gRPC under real gunicorn: every worker serves GRPC_PORT, calls are counted across workers, and
a port that cannot be bound stops the server with the reason."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from tests.service.live_server import free_port, http_json, running_server
from tests.service.metrics_text import sample_values, value

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
CALLS = 8


def test_every_worker_serves_grpc_and_metrics_add_up(
    tmp_path: Path, tiny_model_dir: Path, clean_env: dict[str, str]
) -> None:
    port, grpc_port = free_port(), free_port()
    env = {
        **clean_env,
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
        "WEB_CONCURRENCY": "2",
        "MODEL_DIR": str(tiny_model_dir),
        "ORT_PROVIDERS": "cpu",
    }
    texts = ["a great movie", "an awful movie"]
    with running_server(GUNICORN, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path) as server:
        deadline = time.monotonic() + 60
        while len(server.pids_logging(f"gRPC listening on 0.0.0.0:{grpc_port}")) < 2:
            assert time.monotonic() < deadline, f"not every worker serves gRPC\n{server.logs()}"
            time.sleep(0.2)
        labels = []
        for _ in range(CALLS):  # a connection each: the kernel picks a worker per connection
            with triton.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
                tensor = triton.InferInput("text", [len(texts)], "BYTES")
                tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
                labels.append(
                    [v.decode() for v in client.infer("sentiment", [tensor]).as_numpy("label")]
                )
        status, over_http = http_json("POST", f"{server.url}/v1/sentiment", {"texts": texts})
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
            metrics = sample_values(response.read().decode())

    assert status == 200
    assert labels == [[r["label"] for r in over_http["results"]]] * CALLS
    counted = value(
        metrics, "grpc_requests_total", method="ModelInfer", model="sentiment", code="OK"
    )
    assert counted == CALLS
    served_by = {e["pid"] for e in server.json_logs() if e.get("method") == "gRPC"}
    assert served_by <= server.pids_logging("gRPC listening") and served_by


def test_a_grpc_port_in_use_stops_gunicorn_saying_so(
    tmp_path: Path, tiny_model_dir: Path, clean_env: dict[str, str]
) -> None:
    port = free_port()
    env = {
        **clean_env,
        "PORT": str(port),
        "GRPC_PORT": str(port),  # gunicorn's own HTTP socket holds it
        "WEB_CONCURRENCY": "1",
        "MODEL_DIR": str(tiny_model_dir),
        "ORT_PROVIDERS": "cpu",
    }

    result = subprocess.run(
        GUNICORN, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert f"gRPC cannot listen on port {port} (GRPC_PORT)" in result.stderr
