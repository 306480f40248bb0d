"""A gunicorn worker's gRPC server: started once the worker has loaded its models
(``post_worker_init``), handed over to newer workers on SIGTERM, and waited for when the worker
exits (``worker_exit``).

HTTP connections wait in gunicorn's listening socket, which the master holds, while workers come
and go. gRPC has no such socket: each worker listens itself, so a worker that stopped listening
at once on SIGTERM would leave the port without a listener while its replacements load their
models (a SIGHUP reload replaces every worker at once). So, from SIGTERM, a worker keeps serving
gRPC while a newer worker of the same master is still starting (at most
:data:`HANDOVER_LIMIT_S`, and half of gunicorn's graceful timeout), then stops taking calls;
those in flight get what is left of the graceful timeout, counted from the signal. On a full stop
there is no newer worker starting, and it stops taking calls at once. SIGINT and SIGQUIT
(gunicorn's quick stop) end the calls in flight at once.

Workers say where they are with files in a folder under RELOAD_SIGNAL_DIR, which gunicorn.conf.py
gives the workers of one server: ``starting-<pid>-<start time>`` from the fork (``post_fork``),
``serving-<pid>-<start time>`` once gRPC listens. Processes with a ``starting`` file are waited
for, and, for :data:`FORK_GRACE_S`, the master's other new children (a worker may not have
written its file yet), so its other children (a new master started by SIGUSR2, orphans adopted
by a master running as PID 1) delay a handover by that much at most; the master removes a
worker's files when it has exited (``child_exit``). Without that folder, there is no handover.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from service import SETTINGS_KEY

logger = logging.getLogger(__name__)

ALL_INTERFACES = "0.0.0.0"
HANDOVER_LIMIT_S = 20.0
MARKER_FOLDER = "grpc-workers"  # a folder, so that reload signals (files) never include these
FORK_GRACE_S = 2.0
_POLL_S = 0.1
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_UPTIME = "/proc/uptime"


def mark_starting(environ: Mapping[str, str] = os.environ) -> None:
    """gunicorn's ``post_fork``, in the new worker: it is starting, and will serve gRPC."""
    if not environ.get("GRPC_PORT", "").strip():
        return
    folder = _marker_folder(environ.get("RELOAD_SIGNAL_DIR"))
    if folder is not None:
        _touch(marker_of("starting", os.getpid(), folder))


def forget_worker(pid: int, environ: Mapping[str, str] = os.environ) -> None:
    """gunicorn's ``child_exit``, in the master: remove the files of a worker that has exited."""
    directory = environ.get("RELOAD_SIGNAL_DIR")
    if directory:
        for marker in (Path(directory) / MARKER_FOLDER).glob(f"*-{pid}-*"):
            marker.unlink(missing_ok=True)


def start_in_worker(worker: Any) -> None:
    """gunicorn's ``post_worker_init``: serve gRPC from this worker when GRPC_PORT is set, on
    the host of gunicorn's (first TCP) bind address, unless the worker was told to stop while it
    loaded its models. Another WSGI app served under gunicorn.conf.py (the benchmarks' floor
    server) has no models to serve."""
    settings = getattr(worker.wsgi, "extensions", {}).get(SETTINGS_KEY)
    if settings is None or settings.grpc_port is None or not worker.alive:
        return
    from service.grpc_api.server import start

    server, _ = start(worker.wsgi, host=grpc_host(worker.cfg.address))
    folder = _marker_folder(settings.reload_signal_dir)
    if folder is not None:
        _touch(marker_of("serving", os.getpid(), folder))
    handover = Handover(server, worker.cfg.graceful_timeout, folder, master=worker.ppid)
    worker.grpc_handover = handover
    before_signal(signal.SIGTERM, handover.begin)
    before_signal(signal.SIGINT, handover.quit)
    before_signal(signal.SIGQUIT, handover.quit)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn has it: signal() resets it


def grpc_host(http_addresses: list[Any]) -> str:
    """Where gRPC listens: the host of gunicorn's first TCP bind address (``worker.cfg.address``:
    (host, port) tuples, or unix socket paths), else every interface."""
    return next((a[0] for a in http_addresses if isinstance(a, tuple)), ALL_INTERFACES)


def stop_in_worker(worker: Any) -> None:
    """gunicorn's ``worker_exit``: hand over (a worker that exits without a signal, after
    ``max_requests``, starts here), then wait for the calls in flight."""
    handover = getattr(worker, "grpc_handover", None)
    if handover is not None:
        handover.begin()
        handover.wait()


class Handover:
    """Stops a gRPC server once newer workers serve, in a thread of its own that runs from the
    start: a signal handler only sets events (starting a thread there could deadlock; see
    :func:`before_signal` for a signal that comes while an event is being set)."""

    def __init__(self, server: Any, graceful_s: float, folder: Path | None, master: int):
        self.server = server
        self.graceful_s = graceful_s
        self.folder = folder
        self.master = master
        self.quick = False
        self.signalled_at: float | None = None
        self._requested = threading.Event()
        self._stopped: threading.Event | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grpc-handover", daemon=True)
        self._thread.start()

    def begin(self) -> None:
        if self.signalled_at is None:
            self.signalled_at = time.monotonic()
        self._requested.set()

    def quit(self) -> None:
        self.quick = True
        self.begin()

    def wait(self) -> None:
        """Until the server has stopped and its calls in flight have ended."""
        self._done.wait()
        if self._stopped is not None:
            self._stopped.wait()

    def _run(self) -> None:
        self._requested.wait()
        assert self.signalled_at is not None
        if not self.quick and self.folder is not None and os.getppid() == self.master:
            deadline = self.signalled_at + min(HANDOVER_LIMIT_S, self.graceful_s / 2)
            starting = starting_siblings(self.folder)
            while starting and not self.quick and time.monotonic() < deadline:
                time.sleep(_POLL_S)
                starting = starting_siblings(self.folder)
            if starting and not self.quick:
                logger.warning(
                    "gRPC handover: workers %s still starting; stopping anyway", starting
                )
        left = 0.0 if self.quick else self.graceful_s - (time.monotonic() - self.signalled_at)
        self._stopped = self.server.stop(max(0.0, left))
        logger.info("gRPC stopped taking calls")
        self._done.set()


def starting_siblings(folder: Path, me: int | None = None) -> list[int]:
    """Workers of the master of process ``me`` (this one by default) started after it that do
    not serve gRPC yet: they have a ``starting`` file in ``folder`` and no ``serving`` file. A
    child of the master younger than :data:`FORK_GRACE_S` without either may be a worker that
    has not written its ``starting`` file yet (SIGHUP sends SIGTERM to the old workers right
    after forking the new ones), and counts too."""
    me = os.getpid() if me is None else me
    master, started = _parent_and_start(me)
    now = _uptime_ticks()
    siblings = []
    for pid, (parent, start) in _processes().items():
        if parent != master or pid == me or start < started:
            continue
        if (folder / _marker_name("serving", pid, start)).exists():
            continue
        just_forked = now - start < FORK_GRACE_S * _TICKS_PER_S
        if just_forked or (folder / _marker_name("starting", pid, start)).exists():
            siblings.append(pid)
    return siblings


def _uptime_ticks() -> Fraction:
    """Now, in the clock ticks of process start times. Exact: as floats, 81145.01 s times 100
    is 8114500.99..., and a process started in this tick looked started in the future."""
    with open(_UPTIME) as handle:
        return Fraction(handle.read().split()[0]) * _TICKS_PER_S


def marker_of(state: str, pid: int, folder: Path) -> Path:
    """The file in ``folder`` that says process ``pid`` is ``starting`` or ``serving``."""
    return folder / _marker_name(state, pid, _parent_and_start(pid)[1])


def _marker_name(state: str, pid: int, start: int) -> str:
    return f"{state}-{pid}-{start}"


def _marker_folder(reload_signal_dir: str | Path | None) -> Path | None:
    """The markers' folder, made if missing; None without RELOAD_SIGNAL_DIR or if it cannot be
    made (then there is no handover, said once in the log)."""
    if not reload_signal_dir:
        return None
    folder = Path(reload_signal_dir) / MARKER_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("gRPC handover off: cannot use %s (%s)", folder, exc)
        return None
    return folder


def _touch(marker: Path) -> None:
    try:
        marker.touch()
    except OSError as exc:
        logger.warning("gRPC handover: cannot write %s (%s)", marker, exc)


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


def before_signal(signum: int, action: Callable[[], Any]) -> None:
    """Run ``action`` when ``signum`` arrives, then, whatever happens, the handler installed
    before (gunicorn's, or another ``before_signal``'s).

    ``action`` must be idempotent: it is not run again for a signal that arrives while it runs.
    Python runs handlers in the main thread between two bytecodes, so a second signal (one from
    the master and one from a ``kill`` of the whole process group, as systemd sends) can
    interrupt the first handler; an action that holds a lock (``threading.Event.set`` does)
    would then wait for itself forever, and the worker, deaf to every later signal, would hang
    until the master killed it at its graceful timeout."""
    previous = signal.getsignal(signum)
    running = False

    def handler(sig: int, frame: Any) -> None:
        nonlocal running
        try:
            if not running:
                running = True
                try:
                    action()
                finally:
                    running = False
        finally:
            if callable(previous):
                previous(sig, frame)

    signal.signal(signum, handler)
