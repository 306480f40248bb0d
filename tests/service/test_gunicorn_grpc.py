"""gRPC under real gunicorn: every worker serves GRPC_PORT on the host of gunicorn's bind, calls
are counted across workers, SIGTERM stops new calls while HTTP requests drain, and a port that
another gRPC server holds stops gunicorn with the reason (the other refusals of that check are
in test_gunicorn_conf.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from service.grpc_api import messages
from tests.service.live_server import free_port, http_json, running_server
from tests.service.metrics_text import sample_values, value
from tests.service.test_gunicorn_shutdown import SOCKET_TIMEOUT_S, HeldRequest

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
APP = "service:create_app()"
REFUSED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)  # see test_grpc.py
MOST_CONNECTIONS = 100  # both of two workers get one of these with probability 1 - 2**-99


def server_env(clean_env: dict[str, str], model_dir: Path, port: int, grpc_port: int, workers: int):
    return {
        **clean_env,
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
        "WEB_CONCURRENCY": str(workers),
        "MODEL_DIR": str(model_dir),
        "ORT_PROVIDERS": "cpu",
    }


def infer_labels(address: str, texts: list[str]) -> list[str]:
    """One call on a connection of its own."""
    with triton.InferenceServerClient(address) as client:
        tensor = triton.InferInput("text", [len(texts)], "BYTES")
        tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
        return [v.decode() for v in client.infer("sentiment", [tensor]).as_numpy("label")]


@pytest.mark.slow
def test_every_worker_serves_grpc_and_metrics_add_up(
    tmp_path: Path, tiny_model_dir: Path, clean_env: dict[str, str]
) -> None:
    port, grpc_port = free_port(), free_port()
    env = server_env(clean_env, tiny_model_dir, port, grpc_port, workers=2)
    command = [*GUNICORN, "--bind", f"127.0.0.1:{port}", APP]
    texts = ["a great movie", "an awful movie"]
    address = f"127.0.0.1:{grpc_port}"
    with running_server(command, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path) as server:
        deadline = time.monotonic() + 60
        listening = f"gRPC listening on 127.0.0.1:{grpc_port}"  # the host of gunicorn's bind
        while len(server.pids_logging(listening)) < 2:
            assert time.monotonic() < deadline, f"not every worker serves gRPC\n{server.logs()}"
            time.sleep(0.2)
        labels = []
        # A connection per call: the kernel gives each new connection to one of the workers.
        while len(served_by := grpc_pids(server)) < 2 and len(labels) < MOST_CONNECTIONS:
            labels.append(infer_labels(address, texts))
        status, over_http = http_json("POST", f"{server.url}/v1/sentiment", {"texts": texts})
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
            metrics = sample_values(response.read().decode())

    assert served_by == server.pids_logging(listening)
    assert status == 200
    assert labels == [[r["label"] for r in over_http["results"]]] * len(labels)
    labels_ = {"method": "ModelInfer", "model": "sentiment", "code": "OK"}
    assert value(metrics, "grpc_requests_total", **labels_) == len(labels)


def grpc_pids(server) -> set[int]:
    return {e["pid"] for e in server.json_logs() if e.get("method") == "gRPC"}


@pytest.mark.slow
def test_sigterm_stops_new_grpc_calls_while_http_requests_drain(
    tmp_path: Path, tiny_model_dir: Path, clean_env: dict[str, str]
) -> None:
    port, grpc_port = free_port(), free_port()
    env = server_env(clean_env, tiny_model_dir, port, grpc_port, workers=2)
    address = f"127.0.0.1:{grpc_port}"
    with running_server(
        [*GUNICORN, APP], cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path
    ) as server:
        assert server.process is not None
        assert infer_labels(address, ["good"])
        held = HeldRequest(port, "good")  # keeps the worker draining until its body comes

        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        refused = None
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        while refused is None and time.monotonic() < deadline:
            with grpc.insecure_channel(address) as channel:
                live = channel.unary_unary(
                    f"/{messages.SERVICE}/ServerLive",
                    request_serializer=messages.ServerLiveRequest.SerializeToString,
                    response_deserializer=messages.ServerLiveResponse.FromString,
                )
                try:
                    live(messages.ServerLiveRequest(), timeout=5)
                    time.sleep(0.1)
                except grpc.RpcError as error:
                    refused, refused_after = error, time.monotonic() - signalled
        status, body = held.finish()  # the HTTP request in flight is still answered
        exit_code = server.process.wait(SOCKET_TIMEOUT_S)

    assert refused is not None and refused.code() in REFUSED, server.logs()
    # Not only once HTTP has drained (graceful_timeout is 30 s), and no worker waits for the
    # other to hand over (HANDOVER_LIMIT_S is 20 s): on a full stop there is no newer worker.
    assert refused_after < 10
    assert status == 200 and body["results"][0]["label"] in {"positive", "negative"}
    assert exit_code == 0, server.logs()


@pytest.mark.slow
def test_a_sighup_reload_hands_grpc_over_without_a_gap(
    tmp_path: Path, tiny_model_dir: Path, clean_env: dict[str, str]
) -> None:
    """gunicorn replaces every worker on SIGHUP; HTTP connections wait in the master's socket,
    and gRPC must be served by the old workers until the new ones serve it."""
    port, grpc_port = free_port(), free_port()
    env = server_env(clean_env, tiny_model_dir, port, grpc_port, workers=2)
    address = f"127.0.0.1:{grpc_port}"
    listening = f"gRPC listening on 0.0.0.0:{grpc_port}"
    with running_server(
        [*GUNICORN, APP], cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path
    ) as server:
        assert server.process is not None
        wait_for(lambda: len(server.pids_logging(listening)) == 2, server)
        old = server.pids_logging(listening)
        refused: list[str] = []
        answered = 0

        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        # Until both new workers serve, and the old ones have stopped: a call on a new
        # connection every few milliseconds.
        while len(server.pids_logging(listening) - old) < 2 or not stopped(server) >= old:
            assert time.monotonic() < deadline, server.logs()
            with grpc.insecure_channel(address) as channel:
                try:
                    live_call(channel)(messages.ServerLiveRequest(), timeout=5)
                    answered += 1
                except grpc.RpcError as error:
                    refused.append(f"{error.code().name}: {error.details()}")
            time.sleep(0.02)
        handovers = [e for e in server.json_logs() if e["message"] == "gRPC stopped taking calls"]

    # Without the handover, dozens are refused. A call that meets an old worker just as it stops
    # taking calls (or a connection queued at its listener as it closes, which the kernel
    # resets: SO_REUSEPORT) fails: a rare race, tolerated once.
    assert len(refused) <= 1, (refused, server.logs())
    assert answered > 0
    assert {e["pid"] for e in handovers} >= old


def wait_for(condition, server) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.1)


def stopped(server) -> set[int]:
    """Pids of workers that have stopped taking gRPC calls."""
    return server.pids_logging("gRPC stopped taking calls")


def live_call(channel: grpc.Channel):
    return channel.unary_unary(
        f"/{messages.SERVICE}/ServerLive",
        request_serializer=messages.ServerLiveRequest.SerializeToString,
        response_deserializer=messages.ServerLiveResponse.FromString,
    )


def start_failure(env: dict[str, str], command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_a_grpc_port_another_grpc_server_holds_is_refused(
    app_factory, own_model_dir, tiny_model_dir, clean_env
) -> None:
    """Another gRPC server binds with SO_REUSEPORT too: the workers could share its port."""
    from service.grpc_api.server import start

    other, grpc_port = start(app_factory(own_model_dir), 0)
    try:
        env = server_env(clean_env, tiny_model_dir, free_port(), grpc_port, workers=1)
        result = start_failure(env, [*GUNICORN, APP])
    finally:
        other.stop(None).wait()

    assert result.returncode != 0
    assert f"GRPC_PORT={grpc_port} is in use (Address already in use)" in result.stderr
