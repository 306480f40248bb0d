"""Start a real server process, wait until it is ready, talk to it over HTTP, stop it."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(
    method: str, url: str, body: Any = None, timeout: float = 30, key: str | None = None
) -> tuple[int, Any]:
    """Send ``body`` as JSON (with ``key`` as a bearer key); return the status and the decoded
    JSON answer (errors too)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@dataclass
class Server:
    """A running server: its base URL and where its stdout and stderr go."""

    url: str
    stdout: Path
    stderr: Path
    process: subprocess.Popen | None = None

    def logs(self) -> str:
        return f"--- stdout\n{self.stdout.read_text()}\n--- stderr\n{self.stderr.read_text()}"

    def log_lines(self) -> list[str]:
        """The server's stderr lines written so far: whole lines only, not one that a process
        is still writing."""
        text = self.stderr.read_text()
        return text[: text.rfind("\n") + 1].splitlines()

    def json_logs(self) -> list[dict[str, Any]]:
        """The service's JSON log lines so far."""
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]

    def request_pids(self, path: str) -> set[int]:
        """Pids of the workers that logged answering a request for ``path``."""
        logs = self.json_logs()
        return {e["pid"] for e in logs if e["message"] == "request" and e.get("path") == path}

    def pids_logging(self, message_start: str) -> set[int]:
        """Pids of the workers that logged a message starting with ``message_start``."""
        return {e["pid"] for e in self.json_logs() if e["message"].startswith(message_start)}

    def wait_for_workers(self, count: int, model: str, timeout: float = 60) -> None:
        """Wait until ``count`` workers have logged ``model`` ready (the server is ready as
        soon as one is)."""
        deadline = time.monotonic() + timeout

        def ready_pids() -> set[int]:
            logs = self.json_logs()
            prefix = f"model {model!r} "
            return {
                e["pid"]
                for e in logs
                if e["message"].startswith(prefix) and " ready on " in e["message"]
            }

        while len(ready_pids()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} workers loaded {model}\n{self.logs()}")
            time.sleep(0.2)


@contextmanager
def running_server(
    command: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    port: int,
    log_dir: Path,
    timeout: float = 120,
) -> Iterator[Server]:
    """Run ``command`` in ``cwd``, yield once ``/v2/health/ready`` answers 200, then stop it.

    The server's stdout and stderr are kept in ``log_dir`` and shown when it fails to start.
    """
    server = Server(f"http://127.0.0.1:{port}", log_dir / "server.out", log_dir / "server.err")
    with server.stdout.open("w") as out, server.stderr.open("w") as err:
        process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=err)
        server.process = process
        try:
            _wait_until_ready(server, process, timeout)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(server: Server, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}\n{server.logs()}")
        try:
            status, body = http_json("GET", f"{server.url}/v2/health/ready", timeout=5)
            if status == 200:
                return
            last = f"{status} {body}"
        except (OSError, ValueError) as exc:  # not listening yet
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"server not ready after {timeout}s ({last})\n{server.logs()}")


@contextmanager
def serving_in_thread(app: Any) -> Iterator[str]:
    """Serve a WSGI ``app`` with werkzeug's threaded server on a free loopback port; yield
    its base URL (``http://127.0.0.1:PORT``)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
