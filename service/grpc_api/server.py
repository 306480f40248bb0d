"""The gRPC server of one worker: started once its models are loaded, stopped when it exits.

Every gunicorn worker binds GRPC_PORT with ``SO_REUSEPORT``, so the kernel spreads incoming
connections over the workers, as it does for HTTP; each worker answers from its own models, so
gRPC and HTTP requests for the same model are batched together.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from flask import Flask

from service import REGISTRY_KEY, SETTINGS_KEY
from service.grpc_api.servicer import InferenceServicer
from service.settings import Settings

logger = logging.getLogger(__name__)

HOST = "0.0.0.0"  # as gunicorn's bind


def start(app: Flask, port: int | None = None) -> tuple[grpc.Server, int]:
    """Serve the models of ``app`` over gRPC on ``port`` (default GRPC_PORT; 0: any free port);
    the server and the port it listens on. A port that cannot be bound raises RuntimeError."""
    settings: Settings = app.extensions[SETTINGS_KEY]
    port = settings.grpc_port if port is None else port
    if port is None:
        raise ValueError("no gRPC port: set GRPC_PORT")
    server = grpc.server(
        ThreadPoolExecutor(settings.grpc_threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
        ],
        maximum_concurrent_rpcs=settings.grpc_max_concurrent_calls,
    )
    servicer = InferenceServicer(app.extensions[REGISTRY_KEY], settings)
    server.add_generic_rpc_handlers([servicer.handler()])
    try:
        bound = server.add_insecure_port(f"{HOST}:{port}")
    except RuntimeError as exc:
        bound, reason = 0, f": {exc}"
    else:
        reason = ""
    if bound == 0:  # older grpcio reports a failed bind so instead of raising
        raise RuntimeError(f"gRPC cannot listen on port {port} (GRPC_PORT){reason}")
    server.start()
    logger.info("gRPC listening on %s:%d", HOST, bound)
    return server, bound
