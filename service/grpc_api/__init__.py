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

from typing import Any


def start_in_worker(worker: Any) -> None:
    """gunicorn's ``post_worker_init``: serve gRPC from this worker when GRPC_PORT is set."""
    from service import SETTINGS_KEY

    if worker.wsgi.extensions[SETTINGS_KEY].grpc_port is None:
        return
    from service.grpc_api.server import start

    worker.grpc_server, _ = start(worker.wsgi)


def stop_in_worker(worker: Any) -> None:
    """gunicorn's ``worker_exit``: let this worker's calls in flight finish (up to gunicorn's
    graceful timeout), then stop its gRPC server."""
    server = getattr(worker, "grpc_server", None)
    if server is not None:
        server.stop(grace=worker.cfg.graceful_timeout).wait()
