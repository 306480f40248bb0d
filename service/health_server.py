"""Health probes on a port of their own (HEALTH_PORT), answered by a thread of every worker.

A probe sent to the service's port waits for a free request thread, as any request does: when
every thread of a worker is busy (long translations, a burst of reviews), a liveness probe with
a short timeout fails, and the orchestrator restarts a server that was only busy. On this port,
each gunicorn worker answers ``GET /v2/health/live`` and ``GET /v2/health/ready`` from threads
of its own, with the same statuses and bodies as the service's port; every worker binds it with
SO_REUSEPORT, and the kernel hands each probe to one of them. Started once the worker has loaded
its models (``post_worker_init``); it closes with the worker. Probes answered here are neither
logged nor counted in the request metrics.

Probes are small and come one at a time: a connection gets one request (HTTP/1.0) and each read
:data:`PROBE_READ_TIMEOUT_S`, and a worker holds at most :data:`MAX_PROBE_CONNECTIONS` at once,
closing any more at once. The port is for the orchestrator, not for the public: a client that
keeps that many connections open and slow can still make probes fail, but not exhaust the
worker's threads or files.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from service import REGISTRY_KEY, SETTINGS_KEY
from service.api.health import live_body, not_ready_error, ready_body
from service.errors import NotFound
from service.runtime.registry import ModelRegistry

logger = logging.getLogger(__name__)

LIVE, READY = "/v2/health/live", "/v2/health/ready"
PROBE_READ_TIMEOUT_S = 2  # a connection that sends nothing for this long is closed
MAX_PROBE_CONNECTIONS = 16


class ProbeServer(ThreadingHTTPServer):
    """An HTTP server whose port other processes (the other workers) may bind too, with a
    thread per connection and at most :data:`MAX_PROBE_CONNECTIONS` connections."""

    allow_reuse_port = True
    daemon_threads = True
    # socketserver's default backlog of 5 dropped the SYNs of a burst of connections (each
    # then retried a second later), so probes timed out while the worker had threads to spare.
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_PROBE_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: closed, unanswered
            return
        try:
            super().process_request(request, client_address)  # starts its thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away or sent nonsense: not worth a traceback on stderr.
        logger.debug("health probe from %s failed", client_address, exc_info=True)


def answer(registry: ModelRegistry, path: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a GET of ``path`` (its query string is ignored)."""
    path = path.partition("?")[0]
    if path == LIVE:
        return 200, live_body(registry)
    if path == READY and registry.ready:
        return 200, ready_body(registry)
    if path == READY:
        # As the service's port answers a request without a key: this port checks none.
        settings = registry.settings
        error = not_ready_error(registry, reasons=settings is None or not settings.auth_enabled)
    else:
        error = NotFound(f"no route for GET {path}: this port answers {LIVE} and {READY} only")
    return error.status, error.to_dict()


def serve(registry: ModelRegistry, host: str, port: int) -> ProbeServer:
    """Answer probes on ``host:port`` from a daemon thread (a thread per connection)."""

    class Probe(BaseHTTPRequestHandler):
        timeout = PROBE_READ_TIMEOUT_S
        protocol_version = "HTTP/1.0"  # one request per connection

        def do_GET(self) -> None:
            self._respond(head=False)

        def do_HEAD(self) -> None:
            self._respond(head=True)

        def _respond(self, head: bool) -> None:
            status, body = answer(registry, self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes come every few seconds: no log line each

    server = ProbeServer((host, port), Probe)
    thread = threading.Thread(target=server.serve_forever, name="health-probes", daemon=True)
    thread.start()
    logger.info("health probes also answered on %s:%d", host, port)
    return server


def start_in_worker(worker: Any, host: str) -> ProbeServer | None:
    """gunicorn's ``post_worker_init``: answer probes on HEALTH_PORT when it is set (on
    ``host``, where gunicorn serves HTTP), unless the worker was told to stop while it loaded
    its models, or serves another app than the service."""
    extensions = getattr(worker.wsgi, "extensions", {})
    settings = extensions.get(SETTINGS_KEY)
    if settings is None or settings.health_port is None or not worker.alive:
        return None
    return serve(extensions[REGISTRY_KEY], host, settings.health_port)
