"""Start the servers under test (real gunicorn on a free loopback port) and look inside them."""

from __future__ import annotations

import json
import os
import re
import runpy
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import REPO_ROOT

SERVICE = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


GUNICORN_CONF = REPO_ROOT / "gunicorn.conf.py"
# Set while gunicorn.conf.py is read for its settings: with them set, it creates no folders.
_CONF_PLACEHOLDERS = {"PROMETHEUS_MULTIPROC_DIR": os.devnull, "RELOAD_SIGNAL_DIR": os.devnull}


@dataclass(frozen=True)
class ServiceSettings:
    """What gunicorn.conf.py chooses for the service in this environment."""

    workers: int
    threads: int  # request threads per worker (gthread)
    source: str  # where the worker count comes from, in words
    intra_op_threads: int = 1  # ONNX Runtime threads per worker (ORT_INTRA_OP_THREADS)


def service_settings(
    environ: Mapping[str, str] | None = None, cgroup_root: str | None = None
) -> ServiceSettings:
    """The worker and thread counts gunicorn.conf.py would choose when started with
    ``environ`` (default: this process's environment): WEB_CONCURRENCY if set, else one worker
    per usable core (CPU affinity and cgroup CPU quota), at most 4.

    The file is executed with runpy, as gunicorn reads it; the environment changes it makes
    (ORT_INTRA_OP_THREADS, the metrics and reload folders) are undone, and it creates no folder.
    ``cgroup_root`` points its cgroup lookup elsewhere (tests).
    """
    saved = dict(os.environ)
    env = dict(saved if environ is None else environ) | _CONF_PLACEHOLDERS
    init = {} if cgroup_root is None else {"CGROUP_ROOT": cgroup_root}
    try:
        os.environ.clear()
        os.environ.update(env)
        settings = runpy.run_path(str(GUNICORN_CONF), init_globals=init)
        intra_op_threads = int(os.environ["ORT_INTRA_OP_THREADS"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    explicit = env.get("WEB_CONCURRENCY", "").strip()
    source = (
        f"WEB_CONCURRENCY={explicit}"
        if explicit
        else "gunicorn.conf.py's default: one per usable core, CPU affinity and cgroup CPU "
        "quota counted, at most 4"
    )
    return ServiceSettings(
        int(settings["workers"]), int(settings["threads"]), source, intra_op_threads
    )


def service_command(port: int, settings: ServiceSettings) -> tuple[list[str], dict[str, str]]:
    """The production command and settings (gunicorn.conf.py, the service's defaults), with
    ``settings.workers`` worker processes."""
    return SERVICE, {"PORT": str(port), "WEB_CONCURRENCY": str(settings.workers)}


def floor_command(port: int, settings: ServiceSettings) -> tuple[list[str], dict[str, str]]:
    """The floor (:mod:`benchmarks.floor_server`) under the service's gunicorn settings."""
    return [*SERVICE[:-1], "benchmarks.floor_server:app"], {
        "PORT": str(port),
        "WEB_CONCURRENCY": str(settings.workers),
    }


# torch threads per naive worker: as many as the service's ONNX Runtime threads per worker, as
# in-process comparisons pin both to one count. With torch's default (every core in every
# worker) two sync workers running at once oversubscribe the cores, and the baseline falls far
# below its one-client throughput under concurrency (measured ad hoc, not in the report).
NAIVE_TORCH_THREADS = "NAIVE_TORCH_THREADS"


def naive_command(port: int, settings: ServiceSettings) -> tuple[list[str], dict[str, str]]:
    """The tutorial baseline: gunicorn's default (sync) workers, as many as the service has,
    each with as many torch threads as the service's workers have ONNX Runtime threads
    (:data:`NAIVE_TORCH_THREADS`). ``-c /dev/null``: started in the repository, gunicorn would
    otherwise read the service's gunicorn.conf.py (its threads, hooks and logging) by itself."""
    workers = settings.workers
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "/dev/null",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--timeout",
        "60",
        "benchmarks.naive_server:app",
    ]
    return command, {NAIVE_TORCH_THREADS: str(settings.intra_op_threads)}


@dataclass
class Running:
    name: str
    url: str
    process: subprocess.Popen
    started_s: float  # from launch until the first 200 answer
    log: Path
    workers: list[int] = field(default_factory=list)


def _post_ok(url: str, path: str) -> bool:
    body = json.dumps({"texts": ["warm up"]}).encode()
    request = urllib.request.Request(
        url + path, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@contextmanager
def running(
    name: str,
    command: list[str],
    env: dict[str, str],
    port: int,
    log_dir: Path,
    workers: int,
    probe: str = "/v1/sentiment",
    timeout: float = 180,
) -> Iterator[Running]:
    """Launch, wait until ``probe`` answers 200 and all ``workers`` worker processes are up,
    yield, stop. WEB_CONCURRENCY, PORT, BATCHING and MODELS come from ``env`` only."""
    # The caller's own server settings would reach every server: GRPC_PORT would make the second
    # one refuse to start, and a shared PROMETHEUS_MULTIPROC_DIR would mix their metrics.
    names = {"WEB_CONCURRENCY", "PORT", "BATCHING", "MODELS", "GRPC_PORT", "HEALTH_PORT"}
    names |= {"PROMETHEUS_MULTIPROC_DIR", "RELOAD_SIGNAL_DIR"}
    full_env = {k: v for k, v in os.environ.items() if k not in names} | env
    full_env.setdefault("PYTHONPATH", str(REPO_ROOT))
    log = log_dir / f"{name}.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdout=out, stderr=out)
        try:
            while not _post_ok(url, probe):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}: {log.read_text()}"
                    )
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"{name} not ready after {timeout}s: {log.read_text()}")
                time.sleep(0.05)
            server = Running(name, url, process, time.perf_counter() - started, log)
            deadline = time.perf_counter() + 60
            while len(children(process.pid)) < workers and time.perf_counter() < deadline:
                time.sleep(0.1)
            server.workers = children(process.pid)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(root: int) -> tuple[frozenset[int], float] | None:
    """CPU time (user and system, every thread) that process ``root`` and its children (a
    gunicorn master and its workers) have used so far, with the processes counted; None when
    /proc cannot tell (not Linux, or a process ended meanwhile)."""
    pids = frozenset([root, *children(root)])
    ticks = 0
    for pid in pids:
        try:
            # Fields after the command name, which may hold spaces: state is field 3 of stat(5),
            # utime and stime fields 14 and 15.
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None
    return pids, ticks / os.sysconf("SC_CLK_TCK")


def cpu_ms_per_request(
    before: tuple[frozenset[int], float] | None,
    after: tuple[frozenset[int], float] | None,
    requests: int,
) -> float | None:
    """Milliseconds of the server's CPU per request (``requests`` of them) between two
    :func:`cpu_seconds` readings; None when either is missing, a worker was replaced in between
    (its time would be lost) or there were no requests."""
    if before is None or after is None or before[0] != after[0] or requests <= 0:
        return None
    return 1000 * (after[1] - before[1]) / requests


def memory_mib(pid: int) -> dict[str, float]:
    """Resident (RSS) and proportional (PSS: shared pages split among sharers) memory."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key.lower()] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values


def wait_all_ready(server: Running, probe: str, seconds: float = 30) -> None:
    """Send a few requests so that every worker has answered at least once (loads are lazy in
    no worker, but first-request paths warm up)."""
    deadline = time.perf_counter() + seconds
    for _ in range(4 * max(1, len(server.workers))):
        if time.perf_counter() > deadline:
            break
        _post_ok(server.url, probe)


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")


def scrape(url: str) -> dict[tuple[str, str], float]:
    """``(metric name, labels)`` -> value of the service's /metrics."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            values[(match[1], match[2])] = float(match[3])
    return values


def batching_stats(before: dict, after: dict, model: str) -> dict[str, float]:
    """Mean rows per graph call, mean ms per graph call and mean queue wait between scrapes."""

    def delta(name: str) -> float:
        total = 0.0
        for (metric, labels), value in after.items():
            if metric == name and f'model="{model}"' in labels:
                total += value - before.get((metric, labels), 0.0)
        return total

    calls = delta("inference_executions_total")
    compute_n = delta("inference_compute_seconds_count")
    queue_n = delta("inference_queue_seconds_count")
    return dict(
        mean_rows=delta("inference_rows_total") / calls if calls else float("nan"),
        mean_compute_ms=1000 * delta("inference_compute_seconds_sum") / compute_n
        if compute_n
        else float("nan"),
        mean_queue_ms=1000 * delta("inference_queue_seconds_sum") / queue_n
        if queue_n
        else float("nan"),
        graph_calls=calls,
    )
