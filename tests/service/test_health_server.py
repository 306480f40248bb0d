"""Health probes on HEALTH_PORT: the service's answers, from threads of their own, so that a
worker whose request threads are all busy still answers them."""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from service import REGISTRY_KEY, SETTINGS_KEY
from service.health_server import (
    MAX_PROBE_CONNECTIONS,
    PROBE_READ_TIMEOUT_S,
    ProbeServer,
    serve,
)
from tests.service.conftest import REAL_MODEL_DIR, require_real_artifact
from tests.service.live_server import free_port, http_json, running_server
from tests.service.polling import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
PROBES = ("/v2/health/live", "/v2/health/ready")


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "")
    finally:
        connection.close()


@pytest.fixture
def probe_server(request) -> Iterator[tuple[Flask, int]]:
    """``serve`` for the app of the fixture named by the test's parameter."""
    app: Flask = request.getfixturevalue(request.param)
    port = free_port()
    server: ProbeServer = serve(app.extensions[REGISTRY_KEY], "127.0.0.1", port)
    try:
        yield app, port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unready_app(app_factory, tiny_model_dir) -> Flask:
    return app_factory(tiny_model_dir, models=("sentiment", "nosuch"))


@pytest.fixture
def keyed_unready_app(app_factory, tiny_model_dir) -> Flask:
    return app_factory(tiny_model_dir, models=("sentiment", "nosuch"), api_keys=(API_KEY,))


API_KEY = "probe-test-key-0123456789"


@pytest.mark.parametrize("probe_server", ["app", "unready_app", "keyed_unready_app"], indirect=True)
def test_the_probes_answer_as_on_the_service_s_port(probe_server) -> None:
    # With keys set, as to a request without a key: the reasons a model failed stay back.
    app, port = probe_server
    client = app.test_client()
    for path in PROBES:
        expected = client.get(path)
        status, body, content_type = get(port, path)
        assert (status, json.loads(body)) == (expected.status_code, expected.get_json())
        assert content_type == "application/json"
        head = get(port, path, "HEAD")
        assert (head[0], head[1]) == (status, b"")
    assert get(port, "/v2/health/live?verbose=1")[0] == 200
    ready = get(port, "/v2/health/ready")[1].decode()
    if "nosuch" in ready:
        shown = "model folder does not exist" in ready
        assert shown == (not app.extensions[SETTINGS_KEY].auth_enabled)


@pytest.mark.parametrize("probe_server", ["app"], indirect=True)
def test_only_the_probes_are_answered(probe_server) -> None:
    _, port = probe_server
    for path in ("/v1/models", "/metrics", "/v2/health", "/"):
        status, body, _ = get(port, path)
        assert status == 404
        assert b"/v2/health/live" in body and b"not_found" in body
    assert get(port, "/v2/health/live", "POST")[0] == 501  # http.server's answer to a method


def test_a_health_port_equal_to_the_grpc_port_is_refused(tiny_model_dir, monkeypatch) -> None:
    from pydantic import ValidationError

    from service.settings import Settings, SettingsError
    from tests.service.conftest import make_settings

    with pytest.raises(ValidationError, match="HEALTH_PORT and GRPC_PORT are both 9000"):
        make_settings(tiny_model_dir, health_port=9000, grpc_port=9000)
    monkeypatch.setenv("HEALTH_PORT", "9000")
    monkeypatch.setenv("GRPC_PORT", "9000")
    message = "^invalid settings: HEALTH_PORT and GRPC_PORT are both 9000: choose two$"
    with pytest.raises(SettingsError, match=message):  # the message a worker logs
        Settings.from_environment()


@pytest.mark.slow
def test_under_gunicorn_probes_are_answered_while_every_request_thread_is_busy(
    tmp_path: Path,
) -> None:
    require_real_artifact("translation")
    port, health_port = free_port(), free_port()
    names = {"WEB_CONCURRENCY", "PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR", "RELOAD_SIGNAL_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in names | {"GRPC_PORT", "MODELS"}}
    env |= {
        "PORT": str(port),
        "HEALTH_PORT": str(health_port),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "1",  # one request at a time: a long one holds the only thread
        "MODEL_DIR": str(REAL_MODEL_DIR),
        "MODELS": "translation",
    }
    long = {"texts": ["A man in a blue shirt is playing the guitar on a busy street."] * 64}
    long["beam_size"] = 10
    server_running = running_server(GUNICORN, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path)
    with server_running as server, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(http_json, "POST", f"{server.url}/v1/translate", long, 120)
        time.sleep(0.5)  # the translation holds the worker's request thread
        started = time.monotonic()
        answers = [get(health_port, path) for path in PROBES]
        answered_s = time.monotonic() - started
        still_busy = not busy.done()
        assert busy.result()[0] == 200
    assert [status for status, _, _ in answers] == [200, 200]
    assert still_busy, "the translation ended before the probes: it did not hold the thread"
    assert answered_s < 5, answered_s


def test_probe_threads_are_daemons(app) -> None:
    # The worker exits without waiting for a probe connection left open.
    port = free_port()
    server = serve(app.extensions[REGISTRY_KEY], "127.0.0.1", port)
    try:
        thread = next(t for t in threading.enumerate() if t.name == "health-probes")
        assert thread.daemon and server.daemon_threads
    finally:
        server.shutdown()
        server.server_close()


def _connection_threads() -> int:
    """The probe server's threads that each hold a connection (socketserver's target name)."""
    return sum("process_request_thread" in t.name for t in threading.enumerate())


@pytest.mark.parametrize("probe_server", ["app"], indirect=True)
def test_a_worker_holds_few_probe_connections_and_closes_the_rest(probe_server) -> None:
    # Without a bound, slow connections took a thread and a file each until the worker ran out.
    _, port = probe_server
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_PROBE_CONNECTIONS)]
    try:
        # Every idle connection has its thread (a fixed sleep was too short on a loaded machine).
        wait_until(lambda: _connection_threads() >= MAX_PROBE_CONNECTIONS, seconds=10)
        assert _connection_threads() == MAX_PROBE_CONNECTIONS
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            extra.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
            try:
                answer = extra.recv(100)
            except ConnectionResetError:
                answer = b""
            assert answer == b""  # closed unanswered
    finally:
        for connection in idle:
            connection.close()
    deadline = time.monotonic() + 10
    while True:  # the idle connections' threads end; probes are answered again
        try:
            if get(port, "/v2/health/live")[0] == 200:
                break
        except (ConnectionError, http.client.HTTPException):
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize("probe_server", ["app"], indirect=True)
def test_a_connection_that_sends_nothing_is_closed(probe_server) -> None:
    _, port = probe_server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(100) == b""
        assert time.monotonic() - started < PROBE_READ_TIMEOUT_S + 3


def test_a_client_that_went_away_leaves_no_traceback(app, capsys) -> None:
    server = serve(app.extensions[REGISTRY_KEY], "127.0.0.1", free_port())
    try:
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            server.handle_error(None, ("127.0.0.1", 12345))
    finally:
        server.shutdown()
        server.server_close()
    assert capsys.readouterr().err == ""
