"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``, as Triton's and
KServe's gRPC clients speak it), served from inside each gunicorn worker when GRPC_PORT is set.

* :mod:`service.grpc_api.messages`: the protocol's message classes, from ``inference.proto``;
* :mod:`service.grpc_api.servicer`: the calls, answered from the worker's model registry through
  the same rules as ``/v2`` over HTTP (:mod:`service.api.v2_protocol`);
* :mod:`service.grpc_api.server`: the server a worker starts after loading its models and stops
  when it exits.

Nothing here is imported unless GRPC_PORT is set: grpcio is then loaded in the workers only,
after the fork (gRPC does not survive a fork of a process that has started it).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any


def start_in_worker(worker: Any) -> None:
    """gunicorn's ``post_worker_init``: serve gRPC from this worker when GRPC_PORT is set, on
    the host of gunicorn's (first TCP) bind address. From SIGTERM on, the server takes no new
    calls, as gunicorn takes no new HTTP connections, and those in flight get gunicorn's
    graceful timeout; SIGINT and SIGQUIT (gunicorn's quick stop) end them at once."""
    from service import SETTINGS_KEY

    if worker.wsgi.extensions[SETTINGS_KEY].grpc_port is None:
        return
    from service.grpc_api.server import DEFAULT_HOST, start

    hosts = [address[0] for address in worker.cfg.address if isinstance(address, tuple)]
    server, _ = start(worker.wsgi, host=hosts[0] if hosts else DEFAULT_HOST)
    worker.grpc_server = server
    graceful = worker.cfg.graceful_timeout
    _before_signal(signal.SIGTERM, lambda: server.stop(graceful))
    _before_signal(signal.SIGINT, lambda: server.stop(None))
    _before_signal(signal.SIGQUIT, lambda: server.stop(None))
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn has it: signal() resets it


def _before_signal(signum: int, action: Callable[[], Any]) -> None:
    """Run ``action`` when ``signum`` arrives, then the handler gunicorn installed."""
    previous = signal.getsignal(signum)

    def handler(sig: int, frame: Any) -> None:
        action()
        if callable(previous):
            previous(sig, frame)

    signal.signal(signum, handler)


def stop_in_worker(worker: Any) -> None:
    """gunicorn's ``worker_exit``: wait for this worker's gRPC calls in flight (up to gunicorn's
    graceful timeout from the first stop), then stop its gRPC server. A worker that exits
    without a signal (``max_requests``) starts stopping here."""
    server = getattr(worker, "grpc_server", None)
    if server is not None:
        # An earlier stop's deadline stands: a later call can only make it sooner.
        server.stop(worker.cfg.graceful_timeout).wait()
