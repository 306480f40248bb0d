"""The gRPC server of one worker: started once its models are loaded, stopped when it exits.

Every gunicorn worker binds GRPC_PORT with ``SO_REUSEPORT``, and the kernel hands each new
connection to one of them. Unlike HTTP requests, which go to whichever worker is free, a gRPC
client sends all its calls over one connection, so one client's calls all go to one worker: the
server closes each connection after :data:`MAX_CONNECTION_AGE_S` (letting its calls finish), and
clients, which reconnect by themselves, are spread over the workers again. Each worker answers
from its own models, so gRPC and HTTP requests for the same model are batched together.

grpc's threaded server gives each call a thread from its start, before its message has arrived,
so the pool has a thread for every call the server holds (GRPC_MAX_CONCURRENT_CALLS; grpc
refuses more), and the servicer lets GRPC_THREADS inference calls run at once: calls whose
messages are slow, or never come, wait in threads of their own instead of taking the turns of
calls that could run, and probes and metadata calls never wait for a turn. Threads are started
as calls need them.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from flask import Flask

from service import REGISTRY_KEY, SETTINGS_KEY
from service.grpc_api.health import health_handler
from service.grpc_api.servicer import InferenceServicer
from service.grpc_api.worker import ALL_INTERFACES
from service.settings import Settings

logger = logging.getLogger(__name__)

MAX_CONNECTION_AGE_S = 60


def start(
    app: Flask, port: int | None = None, host: str = ALL_INTERFACES
) -> tuple[grpc.Server, int]:
    """Serve the models of ``app`` over gRPC on ``host:port`` (default GRPC_PORT; 0: any free
    port); the server and the port it listens on. A port that cannot be bound raises
    RuntimeError."""
    settings: Settings = app.extensions[SETTINGS_KEY]
    port = settings.grpc_port if port is None else port
    if port is None:
        raise ValueError("no gRPC port: set GRPC_PORT")
    server = grpc.server(
        ThreadPoolExecutor(settings.grpc_max_concurrent_calls, thread_name_prefix="grpc"),
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
            # a closing connection's calls get as long as a request may wait for its model
            ("grpc.max_connection_age_grace_ms", int(settings.request_timeout_s * 1000) + 5000),
        ],
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_calls,
    )
    registry = app.extensions[REGISTRY_KEY]
    servicer = InferenceServicer(registry, settings)
    server.add_generic_rpc_handlers([servicer.handler(), health_handler(registry)])
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        bound, reason = 0, f": {exc}"
    else:
        reason = ""
    if bound == 0:  # older grpcio reports a failed bind so instead of raising
        raise RuntimeError(f"gRPC cannot listen on {address} (GRPC_PORT){reason}")
    server.start()
    logger.info("gRPC listening on %s:%d", host, bound)
    return server, bound
