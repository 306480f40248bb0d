"""Production serving under the repository's gunicorn.conf.py with two workers, on the tiny
models: metrics summed over workers, tritonclient over gunicorn, request ids in JSON logs."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests.service.live_server import Server, free_port, http_json, running_server
from tests.service.metrics_text import sample_values, value

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
SENTIMENT = {"endpoint": "/v1/sentiment", "model": "sentiment", "status": "200"}


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory) -> Path:
    """PROMETHEUS_MULTIPROC_DIR of the server, holding a stale file that start-up must remove."""
    folder = tmp_path_factory.mktemp("metrics")
    (folder / "counter_999999.db").write_bytes(b"stale file of an earlier run")
    return folder


@pytest.fixture(scope="module")
def server(tiny_ner_model_dir: Path, metrics_dir: Path, tmp_path_factory) -> Iterator[Server]:
    """gunicorn with 2 workers x 4 threads over the tiny models."""
    log_dir = tmp_path_factory.mktemp("gunicorn")
    names = {"WEB_CONCURRENCY", "PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR", "MODELS"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    port = free_port()
    env |= {
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "MODEL_DIR": str(tiny_ner_model_dir),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with running_server(GUNICORN, cwd=REPO_ROOT, env=env, port=port, log_dir=log_dir) as running:
        yield running


def scrape(server: Server) -> dict:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        return sample_values(response.read().decode())


@pytest.mark.slow
def test_metrics_agree_across_two_workers(server: Server, metrics_dir: Path) -> None:
    assert not (metrics_dir / "counter_999999.db").exists()  # cleaned at start
    before = value(scrape(server), "http_requests_total", **SENTIMENT)

    def classify(_: int) -> int:
        status, _body = http_json("POST", f"{server.url}/v1/sentiment", {"texts": ["good", "bad"]})
        return status

    server.wait_for_workers(2, "sentiment")
    sent, deadline = 0, time.monotonic() + 30
    while len(server.request_pids("/v1/sentiment")) < 2:  # normally after the first round
        assert time.monotonic() < deadline, server.logs()
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(classify, range(16))) == {200}
        sent += 16

    scrapes = [scrape(server) for _ in range(6)]  # answered by either worker

    for samples in scrapes:
        assert value(samples, "http_requests_total", **SENTIMENT) - before == sent
        assert value(samples, "http_request_duration_seconds_count", **SENTIMENT) - before == sent
        assert value(samples, "inference_rows_total", model="sentiment") >= 2 * sent
        executions = value(samples, "inference_executions_total", model="sentiment")
        assert 0 < executions <= value(samples, "inference_rows_total", model="sentiment")
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2  # one file per worker
    for samples in scrapes:  # nothing in progress between requests; each worker's memory
        assert value(samples, "http_requests_in_progress") == 1  # the scrape itself
        memory = {
            dict(labels)["pid"]: size
            for (name, labels), size in samples.items()
            if name == "worker_resident_memory_bytes"
        }
        assert set(map(int, memory)) == set(server.request_pids("/v1/sentiment"))
        assert all(size > 20 * 2**20 for size in memory.values())
        served = [
            dict(labels)
            for (name, labels), one in samples.items()
            if name == "model_info" and dict(labels)["model"] == "sentiment" and one == 1
        ]
        assert sorted(int(labels["pid"]) for labels in served) == sorted(map(int, memory))
    rows = value(scrapes[-1], "inference_rows_total", model="sentiment")
    for _ in range(6):  # the statistics extension reads the same files, from either worker
        _, answer = http_json("GET", f"{server.url}/v2/models/sentiment/stats")
        (stats,) = answer["model_stats"]
        assert stats["inference_count"] == rows
        assert stats["execution_count"] == executions
        assert stats["inference_stats"]["success"]["count"] >= sent


@pytest.mark.slow
def test_tritonclient_over_gunicorn(server: Server) -> None:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    texts = ["a great movie", "an awful movie"]
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object))

    result = client.infer("sentiment", [tensor])
    _, v1 = http_json("POST", f"{server.url}/v1/sentiment", {"texts": texts})

    assert result.as_numpy("label").tolist() == [b"positive", b"negative"]
    assert result.as_numpy("score").tolist() == [r["score"] for r in v1["results"]]
    client.close()


@pytest.mark.slow
def test_request_id_round_trip_and_json_log(server: Server) -> None:
    request = urllib.request.Request(
        f"{server.url}/v1/models", headers={"X-Request-ID": "trace-42"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["X-Request-ID"] == "trace-42"

    lines = server.json_logs()
    assert any(e.get("request_id") == "trace-42" and e["status"] == 200 for e in lines)


@pytest.mark.slow
def test_every_log_line_of_the_server_is_json(server: Server) -> None:
    """gunicorn's own lines (booting workers) too, not only the service's: one format for a
    log collector."""
    server.wait_for_workers(2, "sentiment")
    lines = server.log_lines()
    entries = [json.loads(line) for line in lines]  # fails on any other line
    booted = [e for e in entries if e["logger"] == "gunicorn.error" and "Booting" in e["message"]]
    assert len(booted) >= 2 and all(e["level"] == "INFO" and e["pid"] for e in booted)


@pytest.mark.slow
@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n", b"5\r\nabcdeXX", b"0\r\nBad Trailer\r\n\r\n", b"0\r\nContent-Length: 5\r\n\r\n"],
    ids=["chunk size", "chunk terminator", "trailer", "forbidden trailer"],
)
@pytest.mark.parametrize("path", ["/v1/sentiment", "/v2/models/sentiment/infer"])
def test_a_malformed_chunked_body_is_a_400_with_the_reason(
    server: Server, path: str, chunks: bytes
) -> None:
    """gunicorn finds these while the app reads the body: the client gets a 400 in the path's
    error shape, not a 500, and the server logs no error."""
    host, port = server.url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + chunks)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while block := connection.recv(65536):
            answer += block
    status_line, _, rest = answer.partition(b"\r\n")
    body = json.loads(rest.partition(b"\r\n\r\n")[2])

    assert status_line.split()[1] == b"400", answer
    message = body["error"] if path.startswith("/v2") else body["error"]["message"]
    assert message.startswith("request body could not be read: ")
    assert "unhandled error" not in server.logs()
