"""A gunicorn worker's gRPC server: started after the worker has loaded its models
(``post_worker_init``), handed over to newer workers and stopped when the worker exits
(``worker_exit``).

HTTP connections wait in gunicorn's listening socket, which the master holds, while workers come
and go. gRPC has no such socket: each worker listens itself, so a worker that stopped listening
at once on SIGTERM would leave the port without a listener while its replacements load their
models (a SIGHUP reload replaces every worker at once). So, from SIGTERM, a worker keeps serving
gRPC while a newer worker of the same master is still starting (at most
:data:`HANDOVER_LIMIT_S`), and then stops taking calls, letting those in flight finish within
gunicorn's graceful timeout. On a full stop there is no newer worker, and it stops taking calls at
once. Each worker serving gRPC says so with a file in RELOAD_SIGNAL_DIR, the folder that
gunicorn.conf.py gives the workers of one server (and removes with it); without it, there is no
handover. The file names the process and its start time, so it is never mistaken for that of a
later process with the same pid, and it stays after the worker exits (the worker's older
siblings, stopping at the same time, must not take it for one still starting).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service import SETTINGS_KEY

logger = logging.getLogger(__name__)

HANDOVER_LIMIT_S = 20.0
_POLL_S = 0.1
_MARKER = "grpc-serving-{pid}-{start}"


def start_in_worker(worker: Any) -> None:
    """gunicorn's ``post_worker_init``: serve gRPC from this worker when GRPC_PORT is set, on
    the host of gunicorn's (first TCP) bind address; SIGTERM starts the handover, and SIGINT
    and SIGQUIT (gunicorn's quick stop) end the calls in flight at once."""
    settings = worker.wsgi.extensions[SETTINGS_KEY]
    if settings.grpc_port is None:
        return
    from service.grpc_api.server import DEFAULT_HOST, start

    hosts = [address[0] for address in worker.cfg.address if isinstance(address, tuple)]
    server, _ = start(worker.wsgi, host=hosts[0] if hosts else DEFAULT_HOST)
    worker.grpc_server = server
    worker.grpc_marker = None
    if settings.reload_signal_dir is not None:
        worker.grpc_marker = marker_of(os.getpid(), Path(settings.reload_signal_dir))
        worker.grpc_marker.touch()
    _before_signal(signal.SIGTERM, lambda: _begin_handover(worker))
    _before_signal(signal.SIGINT, lambda: server.stop(None))
    _before_signal(signal.SIGQUIT, lambda: server.stop(None))
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn has it: signal() resets it


def stop_in_worker(worker: Any) -> None:
    """gunicorn's ``worker_exit``: finish the handover, then wait for this worker's gRPC calls in
    flight (up to gunicorn's graceful timeout from when it stopped taking calls). A worker that
    exits without a signal (``max_requests``) hands over from here."""
    server = getattr(worker, "grpc_server", None)
    if server is None:
        return
    _begin_handover(worker)
    worker.grpc_handover.join()
    # The handover's stop set the deadline; a later call can only make it sooner.
    server.stop(worker.cfg.graceful_timeout).wait()


def _begin_handover(worker: Any) -> None:
    """Start handing over, once: in a thread, since SIGTERM's handler must not block."""
    if getattr(worker, "grpc_handover", None) is not None:
        return
    worker.grpc_handover = threading.Thread(
        target=_hand_over, args=(worker,), name="grpc-handover", daemon=True
    )
    worker.grpc_handover.start()


def _hand_over(worker: Any) -> None:
    """Serve until no newer sibling worker is still starting, then stop taking calls."""
    marker = getattr(worker, "grpc_marker", None)
    deadline = time.monotonic() + HANDOVER_LIMIT_S
    if marker is not None:
        while (starting := starting_siblings(marker.parent)) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if starting:
            logger.warning("gRPC handover: workers %s still not serving; stopping anyway", starting)
    worker.grpc_server.stop(worker.cfg.graceful_timeout)
    logger.info("gRPC stopped taking calls")


def starting_siblings(folder: Path, me: int | None = None) -> list[int]:
    """Workers of the master of process ``me`` (this one by default) started after it, that
    serve no gRPC yet (have no marker in ``folder``)."""
    me = os.getpid() if me is None else me
    master, started = _parent_and_start(me)
    return [
        pid
        for pid, (parent, start) in _processes().items()
        if parent == master
        and pid != me
        and start >= started
        and not (folder / _MARKER.format(pid=pid, start=start)).exists()
    ]


def marker_of(pid: int, folder: Path) -> Path:
    """The file in ``folder`` that says process ``pid`` serves gRPC."""
    return folder / _MARKER.format(pid=pid, start=_parent_and_start(pid)[1])


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process (Linux /proc)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                found[int(name)] = _parent_and_start(int(name))
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
    return found


def _parent_and_start(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()  # after "pid (command)"
    return int(fields[1]), int(fields[19])


def _before_signal(signum: int, action: Callable[[], Any]) -> None:
    """Run ``action`` when ``signum`` arrives, then the handler gunicorn installed."""
    previous = signal.getsignal(signum)

    def handler(sig: int, frame: Any) -> None:
        action()
        if callable(previous):
            previous(sig, frame)

    signal.signal(signum, handler)
