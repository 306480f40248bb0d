"""An asyncio load generator: closed-loop clients posting single-text requests to a local server.

Only meant for servers this suite starts itself on 127.0.0.1: every level is bounded both in
time and in request count.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import aiohttp

from benchmarks.common import percentile

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LevelResult:
    """One concurrency level: what the clients saw while it was measured."""

    concurrency: int
    duration_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    def summary(self) -> dict:
        ms = [x * 1000 for x in self.latencies_s]
        return dict(
            concurrency=self.concurrency,
            requests=self.ok,
            errors=self.errors,
            throughput=self.ok / self.duration_s if self.duration_s else 0.0,
            p50_ms=percentile(ms, 50),
            p95_ms=percentile(ms, 95),
            p99_ms=percentile(ms, 99),
            client_cpu=self.client_cpu_s / self.duration_s if self.duration_s else 0.0,
            error_samples=self.error_samples[:3],
        )


def require_local(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOCAL_HOSTS:
        raise ValueError(f"load tests only target local servers, not {host!r}")


async def _level(
    url: str,
    texts: Sequence[str],
    concurrency: int,
    seconds: float,
    warmup_s: float,
    max_requests: int,
    on_measure: Callable[[], object] | None = None,
) -> LevelResult:
    require_local(url)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    payloads = itertools.cycle([{"texts": [t]} for t in texts])
    result = LevelResult(concurrency, 0.0)
    sent = 0
    measuring = False
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + warmup_s

        async def client() -> None:
            nonlocal sent
            while loop.time() < stop_at and sent < max_requests:
                payload = next(payloads)
                counted = measuring
                if counted:
                    sent += 1
                started = time.perf_counter()
                try:
                    async with session.post(url, json=payload) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, error = 0, repr(exc)
                else:
                    error = f"HTTP {status}"
                elapsed = time.perf_counter() - started
                if not (counted and measuring):
                    continue
                if status == 200:
                    result.latencies_s.append(elapsed)
                else:
                    result.errors += 1
                    result.error_samples.append(error)

        await asyncio.gather(*(client() for _ in range(concurrency)))  # warm-up
        if on_measure is not None:
            on_measure()  # no request is in flight: the warm-up is over, nothing measured yet
        measuring = True
        cpu, started = time.process_time(), time.perf_counter()
        stop_at = loop.time() + seconds
        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.duration_s = time.perf_counter() - started
        result.client_cpu_s = time.process_time() - cpu
    return result


def run_level(
    url: str,
    texts: Sequence[str],
    concurrency: int,
    seconds: float,
    warmup_s: float = 1.0,
    max_requests: int = 100_000,
    on_measure: Callable[[], object] | None = None,
) -> dict:
    """Closed loop: ``concurrency`` clients each send one request after another for ``seconds``
    (after ``warmup_s`` unmeasured), at most ``max_requests`` measured requests in all.

    ``on_measure`` is called once between the two, when every warm-up request has been answered
    and before the first measured one is sent (a scrape of the server's counters)."""
    return asyncio.run(
        _level(url, texts, concurrency, seconds, warmup_s, max_requests, on_measure)
    ).summary()


async def _post(
    session: aiohttp.ClientSession, url: str, texts: Sequence[str], options: Mapping[str, Any]
) -> float:
    started = time.perf_counter()
    async with session.post(url, json={"texts": list(texts), **options}) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return time.perf_counter() - started


async def _one_vs_many(
    url: str, texts: Sequence[str], repeats: int, options: Mapping[str, Any]
) -> dict:
    require_local(url)
    one, many = [], []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await _post(session, url, texts[:1], options)  # open the connection
        for _ in range(repeats):
            one.append(await _post(session, url, texts, options))
            started = time.perf_counter()
            for text in texts:
                await _post(session, url, [text], options)
            many.append(time.perf_counter() - started)
    return dict(one_request_s=one, sequential_s=many)


def one_vs_many(
    url: str, texts: Sequence[str], repeats: int, options: Mapping[str, Any] | None = None
) -> dict:
    """Seconds for all ``texts`` in one request vs one request per text, sent one after another
    (each repeat does both); ``options`` are the other fields of every body (``beam_size``)."""
    return asyncio.run(_one_vs_many(url, texts, repeats, options or {}))
