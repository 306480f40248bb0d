"""Benchmarks over HTTP against real gunicorn servers, and the serving footprint."""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path

from benchmarks import loadgen, pyspy, servers
from benchmarks.common import Mode, median, target_concurrency
from benchmarks.models import ModelBench

log = logging.getLogger(__name__)

SERVERS = {
    "service (batching)": (servers.service_command, {"BATCHING": "true"}),
    "service (BATCHING=false)": (servers.service_command, {"BATCHING": "false"}),
    "naive (Flask + PyTorch eager)": (servers.naive_command, {}),
    "floor (Flask, no model)": (servers.floor_command, {}),
}
SERVICE_BATCHING, SERVICE_NO_BATCHING, NAIVE, FLOOR = SERVERS


def http_section(models: Sequence[ModelBench], mode: Mode, log_dir: Path) -> dict:
    """Load test every server at every concurrency, 64-in-one vs 64 sequential requests on the
    production service, and the footprint of each server.

    The servers are started one after another (so that start-up times do not compete) and then
    all stay up; each repeat runs every concurrency level on every server in turn, the server
    order rotating between repeats, so that a slow patch of a shared machine hits all servers
    alike. A level's figures are the medians over its repeats (requests and errors: totals).
    """
    sentiment = next(m for m in models if m.name == "sentiment")
    texts = sentiment.http_texts(mode.http_texts)
    settings = servers.service_settings()
    out: dict = {
        "load": [],
        "batching_stats": [],
        "one_vs_many": [],
        "servers": {},
        "workers": settings.workers,
        "workers_source": settings.source,
    }
    with ExitStack() as stack:
        running: dict[str, servers.Running] = {}
        for name, (command_of, extra_env) in SERVERS.items():
            port = servers.free_port()
            command, env = command_of(port, settings)
            server = stack.enter_context(
                servers.running(
                    name.split()[0], command, env | extra_env, port, log_dir, settings.workers
                )
            )
            servers.wait_all_ready(server, sentiment.endpoint)
            running[name] = server
            out["servers"][name] = dict(
                startup_s=server.started_s,
                workers=[servers.memory_mib(pid) for pid in server.workers],
                worker_count=settings.workers,
                # request threads per worker: gthread for the service, sync for the naive one
                threads=1 if name == NAIVE else settings.threads,
                command=" ".join(command[1:] if command[0].endswith("python") else command),
                env={k: v for k, v in (env | extra_env).items() if k != "PORT"},
            )
        levels: dict[tuple[str, int], list[dict]] = defaultdict(list)
        stats: dict[tuple[str, int], list[dict]] = defaultdict(list)
        names = list(running)
        for repeat in range(mode.http_repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for concurrency in mode.concurrency:
                for name in order:
                    summary, batching = measure_level(
                        running[name].url,
                        sentiment.endpoint,
                        texts,
                        concurrency,
                        mode,
                        sentiment.name if name not in (NAIVE, FLOOR) else None,
                        running[name].process.pid,
                    )
                    levels[name, concurrency].append(summary)
                    if batching is not None:
                        stats[name, concurrency].append(batching)
                    log.info("%s c=%d repeat %d: %s", name, concurrency, repeat + 1, summary)
        for name in names:
            for concurrency in mode.concurrency:
                out["load"].append(median_level(levels[name, concurrency]) | {"server": name})
                if stats[name, concurrency]:
                    out["batching_stats"].append(
                        dict(server=name, concurrency=concurrency)
                        | median_fields(stats[name, concurrency])
                    )
        batching = running[SERVICE_BATCHING]
        if mode.profile_s > 0:
            out["worker_profiles"] = {
                name: _profile_under_load(running[name], sentiment, texts, mode)
                for name in (SERVICE_BATCHING, NAIVE)
            }
        for model in models:
            batch = model.http_texts(mode.batch_texts)
            for options in model.request_options:
                timing = loadgen.one_vs_many(
                    batching.url + model.endpoint, batch, mode.batch_repeats, options
                )
                one, many = median(timing["one_request_s"]), median(timing["sequential_s"])
                out["one_vs_many"].append(
                    dict(
                        model=model.name,
                        options=options,
                        texts=len(batch),
                        one_s=one,
                        many_s=many,
                        ratio=many / one,
                    )
                )
        for name, server in running.items():  # memory after the load: a worker's steady state
            out["servers"][name]["workers_after"] = [
                servers.memory_mib(pid) for pid in server.workers
            ]
    return out


def measure_level(
    url: str,
    endpoint: str,
    texts: Sequence[str],
    concurrency: int,
    mode: Mode,
    model: str | None,
    server_pid: int | None = None,
) -> tuple[dict, dict | None]:
    """One load level on the server at ``url`` (warm-up, then measured), and, when ``model`` is
    given, the service's batching statistics for ``model`` over the measured part only: its
    /metrics is scraped when the warm-up has ended and again after the level.

    With ``server_pid`` (the gunicorn master), the summary's ``server_cpu_ms`` is the CPU that
    the server's processes used per successful request over the measured part (None when it could
    not be read); the scrapes fall outside it."""
    metrics: dict = {}
    cpu: list = []

    def start() -> None:
        if model:
            metrics.update(servers.scrape(url))
        if server_pid is not None:
            cpu.append(servers.cpu_seconds(server_pid))

    summary = loadgen.run_level(
        url + endpoint,
        texts,
        concurrency,
        mode.level_s,
        mode.warmup_s,
        mode.max_requests,
        on_measure=start,
    )
    if server_pid is not None:  # per request answered 200, as throughput counts them
        summary["server_cpu_ms"] = servers.cpu_ms_per_request(
            cpu[0], servers.cpu_seconds(server_pid), summary["requests"]
        )
    if model is None:
        return summary, None
    return summary, servers.batching_stats(metrics, servers.scrape(url), model)


def _profile_under_load(
    server: servers.Running, model: ModelBench, texts: Sequence[str], mode: Mode
) -> dict:
    """py-spy on one worker of ``server`` while clients keep it busy at the target concurrency:
    the share of samples per part of the request path (empty, with a note, when py-spy could
    not record)."""
    concurrency = target_concurrency(mode.concurrency)
    profile = dict(concurrency=concurrency, seconds=mode.profile_s, shares=[])
    if not server.workers:
        return profile | dict(note=f"no worker of {server.name} was found")
    outcome: list[str | RuntimeError] = []

    def record() -> None:
        try:
            outcome.append(pyspy.record(server.workers[0], mode.profile_s))
        except RuntimeError as exc:
            outcome.append(exc)

    spy = threading.Thread(target=record)
    spy.start()
    loadgen.run_level(
        server.url + model.endpoint, texts, concurrency, mode.profile_s + 2, 0.5, mode.max_requests
    )
    spy.join()
    (raw,) = outcome
    if isinstance(raw, RuntimeError):
        log.warning("no worker profile of %s: %s", server.name, raw)
        return profile | dict(note=str(raw))
    return profile | dict(shares=pyspy.shares(raw))


_TOTALS = ("requests", "errors")


def median_level(repeats: Sequence[dict]) -> dict:
    """One level's summary over its repeats: totals of requests and errors, medians of the
    rest (throughput, percentiles, client and server CPU), and the first error samples."""
    merged = median_fields(repeats)
    merged |= {key: sum(r[key] for r in repeats) for key in _TOTALS}
    merged["concurrency"] = repeats[0]["concurrency"]
    merged["error_samples"] = [s for r in repeats for s in r.get("error_samples", [])][:3]
    merged["repeats"] = len(repeats)
    return merged


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def median_fields(records: Sequence[dict]) -> dict:
    """The median of every numeric field of ``records``, over the records where it is a number
    (a figure that could not be measured in one repeat is None there)."""
    keys = dict.fromkeys(k for r in records for k, v in r.items() if _numeric(v))
    return {key: median([r[key] for r in records if _numeric(r.get(key))]) for key in keys}


# --- install size ------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dist: metadata.Distribution, extras: set[str]) -> list[str]:
    names = []
    for requirement in dist.requires or []:
        spec, _, marker = requirement.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra and extra.group(1) not in extras:
            continue
        if (
            not extra
            and marker.strip()
            and "python_version" not in marker
            and "sys_platform" not in marker
        ):
            continue
        match = _NAME.match(spec.strip())
        if match:
            names.append(match.group(0))
    return names


def closure(root: str, extras: set[str]) -> dict[str, int]:
    """Installed distributions needed by ``root`` with ``extras`` -> their size in bytes."""
    seen: dict[str, int] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        key = _normalize(name)
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = _dist_size(dist)
        todo += [(n, set()) for n in _requirements(dist, wanted)]
    return seen


def _dist_size(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        try:
            path = Path(dist.locate_file(file))
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass
    return total


def install_sizes(project: str = "rnn-inference-service") -> dict:
    """Sizes of the serving install (the package's base requirements, no torch) and of the
    training install (base + train extra) as installed in this environment."""
    serve = closure(project, set())
    train = closure(project, {"train"})
    biggest = sorted(train.items(), key=lambda kv: -kv[1])[:6]
    return dict(
        serve_mb=sum(serve.values()) / 2**20,
        train_mb=sum(train.values()) / 2**20,
        serve_packages=len(serve),
        train_packages=len(train),
        torch_in_serve=any(k.startswith("torch") for k in serve),
        biggest_train=[(k, v / 2**20) for k, v in biggest],
    )
