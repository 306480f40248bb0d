"""Telling whether an HTTP client is still there, so that a request whose client has left stops
waiting for its model (see ``CLIENT_ALIVE`` in :mod:`service.runtime.batcher`).

Under gunicorn the request's connection is in its environ (``gunicorn.socket``). A client that
gave up (its timeout, a cancelled call) has closed it: a peek at the socket, without waiting,
reads its end (nothing) or a reset. An open connection has nothing to read, or the next request
of a pipelining client. A client that shuts down only its sending side and still waits for the
answer reads as gone too; HTTP clients do not do that. Over TLS (gunicorn's ``certfile``) the
socket cannot be peeked at, and nor can it without gunicorn (Flask's test client): such
requests are never taken for gone.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from flask import Flask, g, request

from service.runtime.batcher import CLIENT_ALIVE

GUNICORN_SOCKET = "gunicorn.socket"


def peer_alive(sock: socket.socket) -> Callable[[], bool]:
    """A check, at any time, of whether the other end of ``sock`` still has it open."""

    def alive() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:  # open, nothing sent
            return True
        except OSError:  # reset by the peer, or closed here
            return False

    return alive


def install_disconnect_checks(app: Flask) -> None:
    """Let each request of ``app`` that waits for its model find out that its client left."""

    @app.before_request
    def watch_client() -> None:
        sock = request.environ.get(GUNICORN_SOCKET)
        check = None
        if isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket):
            check = peer_alive(sock)
        g.client_alive_token = CLIENT_ALIVE.set(check)

    @app.teardown_request
    def unwatch_client(exc: BaseException | None) -> None:
        token = g.pop("client_alive_token", None)
        if token is not None:
            CLIENT_ALIVE.reset(token)
