"""Graceful shutdown: on SIGTERM, gunicorn stops taking requests and in-flight requests finish.

Which requests are in flight is decided by the test, not by timing: each request sends its
headers with ``Expect: 100-continue`` and the worker answers ``100 Continue`` when its request
thread has parsed them and is about to call the app. The test holds the body back until after
SIGTERM, so the requests cannot finish before the signal, however fast or slow the machine is.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.service.live_server import free_port, running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
# --keep-alive 300: an idle keep-alive connection is closed early only by a stopping worker
# (which caps it at 2 s once it stops accepting), so its close is the sign of that.
GUNICORN = [
    *(sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--keep-alive", "300"),
    "service:create_app()",
]
SOCKET_TIMEOUT_S = 60  # a deadline for every read: generous, since none of them should wait long


class HeldRequest:
    """``POST /v1/sentiment`` whose headers the worker has taken up, with its body still to come."""

    def __init__(self, port: int, text: str):
        self.body = json.dumps({"texts": [text]}).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
        self.reader = self.sock.makefile("rb")
        self.sock.sendall(
            b"POST /v1/sentiment HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(self.body)
        )
        # Sent by the worker's request thread once it has parsed the headers.
        assert self.reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert self.reader.readline() == b"\r\n"

    def finish(self) -> tuple[int, dict]:
        """Send the body; return the status and JSON answer."""
        try:
            self.sock.sendall(self.body)
            status_line = self.reader.readline()
            assert status_line.startswith(b"HTTP/1.1 "), f"no answer: {status_line!r}"
            headers = {}
            while (line := self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            answer = self.reader.read(int(headers["content-length"]))
            return int(status_line.split()[1]), json.loads(answer)
        finally:
            self.reader.close()
            self.sock.close()


def first_bytes_before_close(sock: socket.socket) -> bytes:
    """Wait until the server sends something on ``sock`` or closes it; b"" when it closed it."""
    try:
        return sock.recv(100)
    except ConnectionResetError:
        return b""


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(tiny_model_dir, clean_env, tmp_path) -> None:
    port = free_port()
    env = {**clean_env, "PORT": str(port), "WEB_CONCURRENCY": "1", "MODEL_DIR": str(tiny_model_dir)}
    with running_server(GUNICORN, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path) as server:
        assert server.process is not None
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT_S)
        idle.request("GET", "/v2/health/live")
        assert idle.getresponse().read() and idle.sock is not None  # kept alive, now idle
        held = [HeldRequest(port, text) for text in ("good", "bad", "great")]

        server.process.send_signal(signal.SIGTERM)

        # The worker closes its idle keep-alive connection only after it has stopped accepting.
        assert first_bytes_before_close(idle.sock) == b""
        idle.close()
        # A new connection is refused while the requests in flight still run: the stopping
        # worker closes its listening sockets once it no longer accepts (it kept them until it
        # exited: the kernel completed handshakes that no one would accept, and clients waited,
        # then got a reset). Until then, a connection made is never served.
        refused_while_running, deadline = False, time.monotonic() + 10
        while not refused_while_running and time.monotonic() < deadline:
            try:
                late = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
            except ConnectionRefusedError:
                refused_while_running = True
            else:
                late.close()
                time.sleep(0.1)

        answers = [request.finish() for request in held]  # the bodies come after SIGTERM
        exit_code = server.process.wait(SOCKET_TIMEOUT_S)
        assert refused_while_running, server.logs()

    assert [status for status, _ in answers] == [200, 200, 200], server.logs()
    assert [body["results"][0]["label"] for _, body in answers] == [
        "positive",
        "negative",
        "positive",
    ]
    assert exit_code == 0, server.logs()
