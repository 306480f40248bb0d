"""Gunicorn settings for ``gunicorn -c gunicorn.conf.py "service:create_app()"``.

Environment: PORT (default 8000), WEB_CONCURRENCY (worker processes), GUNICORN_THREADS
(threads per worker), GUNICORN_TIMEOUT and GUNICORN_KEEPALIVE (seconds), GUNICORN_ACCESS_LOG
(gunicorn's own access log: a path, or - for stdout; off by default), LOG_LEVEL,
PROMETHEUS_MULTIPROC_DIR (where workers keep their metrics) and RELOAD_SIGNAL_DIR (how a reload
reaches every worker): fresh temporary folders when unset. With GRPC_PORT set, every worker also
serves the Open Inference Protocol over gRPC on that port (service/grpc_api); with HEALTH_PORT
set, the health probes on that port too, from threads of their own (service/health_server.py).
"""

import atexit
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile


def _env_int(name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer setting from the environment; anything else stops gunicorn naming it."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        sys.exit(f"invalid settings: {name}={value!r}: expected an integer {bounds}")
    return number


# Where the cgroup's CPU quota is (tests point it elsewhere through runpy's init_globals).
CGROUP_ROOT = globals().get("CGROUP_ROOT", "/sys/fs/cgroup")


def _cpu_quota(root: str) -> float | None:
    """CPUs allowed by a cgroup CPU quota (docker run --cpus, a Kubernetes CPU limit), if any."""
    for quota_file, period_file in (
        ("cpu.max", None),  # cgroup v2: "<quota> <period>" or "max <period>"
        ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"),  # cgroup v1: -1 means no quota
    ):
        try:
            with open(os.path.join(root, quota_file)) as handle:
                fields = handle.read().split()
            if period_file is not None:
                with open(os.path.join(root, period_file)) as handle:
                    fields.append(handle.read().strip())
            quota, period = fields[0], fields[1]
            if quota != "max" and int(quota) > 0:
                return int(quota) / int(period)
            return None
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return None


def _usable_cores() -> int:
    # The cores this process may run on (honours taskset/cpusets), not the host's total, and no
    # more than a CPU quota allows: in a container limited to 2 CPUs on a 32-core host, the
    # affinity mask still lists 32.
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cpu_quota(CGROUP_ROOT)
    if quota is not None:
        cores = min(cores, max(1, int(quota)))
    return cores


bind = f"0.0.0.0:{_env_int('PORT', 8000, minimum=0, maximum=65535)}"

# Inference is CPU-bound, not I/O-bound, so the usual "2 x cores + 1" would only make workers
# fight for the same cores. One worker per core, each running ONNX Runtime with
# ORT_INTRA_OP_THREADS=1 (the service's default), keeps workers x intra-op threads = cores.
# Capped at 4 because every worker holds its own copy of every model in memory. Raise
# ORT_INTRA_OP_THREADS only together with a lower WEB_CONCURRENCY.
workers = _env_int("WEB_CONCURRENCY", max(1, min(_usable_cores(), 4)))

# The cores left to each worker go to ONNX Runtime's intra-op pool, so that workers x intra-op
# threads = cores (ORT would otherwise size its pool to every core in every worker). Workers
# inherit this environment; an explicit ORT_INTRA_OP_THREADS wins.
os.environ.setdefault("ORT_INTRA_OP_THREADS", str(max(1, _usable_cores() // workers)))

# A few threads per worker let a worker parse the next request and stream responses while
# another thread is inside ONNX Runtime (which releases the GIL). With BATCHING=true (the
# default) the request threads waiting for a model take turns: one of them at a time runs a
# batch holding the rows of all of them, so more threads mean bigger batches, not more
# inferences sharing a core. With BATCHING=false each in-flight request runs the graph on its
# own thread, so keep this small.
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)

# Sessions are created in each worker by create_app(); preloading would build them in the
# master and share ONNX Runtime state across fork(), which it does not support.
preload_app = False

# gunicorn >= 25.1 opens a control socket for gunicornc at one path per user
# ($HOME/.gunicorn/gunicorn.ctl), which every server of that user would claim in turn; the
# service is managed through signals and its HTTP API instead.
control_socket_disable = True

# A worker silent this long is killed and replaced (0: never).
timeout = _env_int("GUNICORN_TIMEOUT", 60, minimum=0)
graceful_timeout = 30  # on SIGTERM, in-flight requests get this long to finish
# Seconds an idle keep-alive connection stays open; behind a load balancer, more than its idle
# timeout, so that it is the balancer that closes idle connections (else: occasional 502s).
keepalive = _env_int("GUNICORN_KEEPALIVE", 5, minimum=0)

# The service logs one JSON line per request itself (method, path, status, model, duration,
# request id: service/log.py); gunicorn's plain-text access line would say it a second time.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"  # stderr
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn's own lines in the service's format: one JSON object per line unless LOG_FORMAT=text.
if os.environ.get("LOG_FORMAT", "json").strip().lower() != "text":
    logger_class = "service.gunicorn_log.GunicornJsonLogger"

# The worker heartbeat file lives in memory, not on a container's overlay filesystem, where a
# slow disk could make gunicorn think a healthy worker hung.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Prometheus multiprocess mode: every worker writes its metrics to files in one folder, and
# GET /metrics, whichever worker answers it, adds them all up. The variable must be set before
# a worker imports prometheus_client, so it is set here, in the master, before any fork.
_shm = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _folder(variable: str, prefix: str) -> str | None:
    """Set ``variable`` to a fresh temporary folder when it is unset; the folder if this master
    process created it (it removes those as it exits). gunicorn reads this file again on
    SIGHUP, when the variable is already set: a marker variable remembers which process made
    the folder, so that a new master started by SIGUSR2 (which inherits both) leaves it alone."""
    marker = f"GUNICORN_CONF_CREATED_{variable}"
    if not os.environ.get(variable):
        os.environ[variable] = tempfile.mkdtemp(prefix=prefix, dir=_shm)
        os.environ[marker] = f"{os.getpid()}:{os.environ[variable]}"
    ours = os.environ.get(marker) == f"{os.getpid()}:{os.environ[variable]}"
    return os.environ[variable] if ours else None


_MASTER = os.getpid()
_created_folders = [
    _folder("PROMETHEUS_MULTIPROC_DIR", "rnn-metrics-"),
    # Reloads reach every worker through signal files in a folder they share (see
    # service/runtime/reload_broadcast.py).
    _folder("RELOAD_SIGNAL_DIR", "rnn-reload-"),
]


def _remove_created_folders():
    """Remove the folders this master created, in the master only (its workers, forked from
    it, run the same exit functions)."""
    if os.getpid() == _MASTER:
        for folder in filter(None, _created_folders):
            shutil.rmtree(folder, ignore_errors=True)


# Also when the master stops without gunicorn's on_exit: a start refused below, or workers
# that fail to boot (gunicorn then halts with a traceback of its own).
atexit.register(_remove_created_folders)


def on_starting(server):
    """Refuse a GRPC_PORT or HEALTH_PORT that is in use; empty the metrics folder (files left by
    an earlier run would be counted again); fix the models served (:func:`_pin_models`)."""
    ports = {v: os.environ.get(v, "").strip() for v in ("GRPC_PORT", "HEALTH_PORT")}
    if ports["GRPC_PORT"] and ports["GRPC_PORT"] == ports["HEALTH_PORT"]:
        sys.exit(f"invalid settings: HEALTH_PORT and GRPC_PORT are both {ports['GRPC_PORT']}")
    for variable in ports:
        _refuse_a_port_in_use(variable, server.cfg.address)
    _pin_models(server)
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for entry in os.scandir(folder):
        if entry.is_file() and entry.name.endswith(".db"):
            os.remove(entry.path)


def on_reload(server):
    """SIGHUP: the new workers serve the pinned models and any model folder added since."""
    _pin_models(server)


def _pin_models(server):
    """Without MODELS, set it to the model folders MODEL_DIR holds now, for every worker forked
    from here on: each worker would otherwise serve what it finds when it starts, and a folder
    missing at that moment (being replaced, say) would be left out without a word, the worker
    ready without it. Pinned, a missing folder is a model that failed to load: not ready, and
    reloadable. Folders added later join at the next SIGHUP."""
    if os.environ.get("GUNICORN_CONF_PINNED_MODELS") != os.environ.get("MODELS"):
        return  # set by the operator: theirs to keep
    from pathlib import Path

    from service.runtime.manifest import discover_models
    from service.settings import default_model_dir

    pinned = [name for name in os.environ.get("MODELS", "").split(",") if name]
    found = discover_models(Path(os.environ.get("MODEL_DIR", "").strip() or default_model_dir()))
    names = ",".join(sorted({*pinned, *found}))
    if names and names != os.environ.get("MODELS"):
        os.environ["MODELS"] = os.environ["GUNICORN_CONF_PINNED_MODELS"] = names
        server.log.info("serving the models of MODEL_DIR: %s (MODELS)", names)


def post_fork(server, worker):
    """In the new worker: check the service's settings, and say that it is starting (the gRPC
    handover waits for such workers). Invalid settings are one error line, and the worker exits
    as one that failed to boot, which stops gunicorn; raised while the app loads, they would come
    with gunicorn's traceback, in every worker. (The master checks nothing: it must not load
    the service's modules before it forks.)"""

    # Until gunicorn installs the worker's own handlers (init_process, after this hook and the
    # app's loading), the worker has the master's, which only queue a signal in the master's
    # memory: a SIGTERM now, as the server stops, would be lost, and the worker would serve on
    # until the master killed it at the graceful timeout.
    def stop_soon(signum, frame):
        worker.alive = False

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, stop_soon)
    from service.grpc_api.worker import mark_starting
    from service.settings import Settings, SettingsError

    try:
        Settings.from_environment()
    except SettingsError as exc:
        server.log.error("%s", exc)
        sys.exit(server.WORKER_BOOT_ERROR)
    mark_starting()


def post_worker_init(worker):
    """Serve gRPC, and the health probes on a port of their own, from this worker once its
    models are loaded, when GRPC_PORT and HEALTH_PORT are set. A port that cannot be bound
    stops the worker, and gunicorn with it, saying why."""
    from service import health_server
    from service.grpc_api.worker import grpc_host, start_in_worker

    start_in_worker(worker)
    health_server.start_in_worker(worker, grpc_host(worker.cfg.address))
    _close_listeners_once_stopped(worker)


def _close_listeners_once_stopped(worker):
    """After SIGTERM, once the worker no longer accepts connections, close its copies of the
    HTTP listening sockets. The master has closed its own, so the kernel then refuses new
    connections at once; before, it completed their handshakes into a queue that no one would
    accept, and clients waited until the last worker exited, then got a reset. (On SIGHUP the
    master and the new workers keep theirs: nothing changes for clients.)"""
    import threading
    import time

    from service.grpc_api.worker import before_signal

    stopping = threading.Event()

    def close_when_not_accepting():
        stopping.wait()
        # gthread's loop unregisters its listeners from its poller as it stops accepting.
        while worker.alive or getattr(worker, "_accepting", True):
            time.sleep(0.05)
        for listener in worker.sockets:
            listener.close()

    threading.Thread(target=close_when_not_accepting, name="close-listeners", daemon=True).start()
    before_signal(signal.SIGTERM, stopping.set)


def worker_int(worker):
    """SIGINT or SIGQUIT (a quick stop) in a worker: remembered for worker_exit."""
    worker.quick_exit = True


def worker_exit(server, worker):
    """Hand gRPC over to newer workers and let this worker's calls in flight finish
    (service/grpc_api/worker.py). On a quick stop, exit at once: the interpreter would
    otherwise wait for gthread's request threads, running HTTP requests to their end."""
    from service.grpc_api.worker import stop_in_worker

    stop_in_worker(worker)
    if getattr(worker, "quick_exit", False):
        logging.shutdown()
        os._exit(0)


def _refuse_a_port_in_use(variable, http_addresses):
    """Stop here if the port of ``variable`` (GRPC_PORT, HEALTH_PORT) is gunicorn's own port or
    another process listens on it. The workers bind it with SO_REUSEPORT, which would let them
    share it, silently, with another server of the same user; this plain bind cannot. Skipped
    for a new master started by SIGUSR2 (GUNICORN_FD is set), whose old workers still hold it."""
    if not os.environ.get(variable, "").strip() or os.environ.get("GUNICORN_FD"):
        return
    from service.grpc_api.worker import grpc_host

    port = _env_int(variable, 0, maximum=65535)
    if any(isinstance(address, tuple) and address[1] == port for address in http_addresses):
        sys.exit(f"invalid settings: {variable}={port} is gunicorn's HTTP port; choose another")
    host = grpc_host(http_addresses)  # where the workers will bind it
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            sys.exit(f"{variable}={port} is in use ({exc.strerror}); free it or choose another")


def child_exit(server, worker):
    """Forget a worker that is gone: its metrics files (its live gauges go, its counters join
    an archive: service/metrics_files.py) and its gRPC handover files."""
    from service.grpc_api.worker import forget_worker
    from service.metrics_files import archive_dead_worker

    archive_dead_worker(worker.pid)
    forget_worker(worker.pid)


def on_exit(server):
    """Remove the metrics and reload folders that this config created."""
    _remove_created_folders()
