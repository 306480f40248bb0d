"""Run modes, timing helpers and a description of the machine."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mode:
    """How long and how wide one run is (``tiny`` is for the tests)."""

    name: str
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    threads: tuple[int, ...] = (1,)
    repeats: int = 5
    repeat_s: float = 0.5  # time one repeat of one cell lasts (about)
    # repeats of a cell of a model with a search loop (translation): fewer, as one call can last
    # seconds (beam 5 over 128 sentences) and a repeat holds at least one call
    search_repeats: int = 3
    text_limit: int | None = None  # dev texts used for timing
    metric_limit: int | None = None  # dev examples per set for the quantization metrics
    concurrency: tuple[int, ...] = (1, 8, 32, 64)
    level_s: float = 10.0  # measured seconds per concurrency level and repeat
    http_repeats: int = 3  # each (server, concurrency) level, interleaved across the servers
    warmup_s: float = 2.0  # unmeasured seconds before each level
    max_requests: int = 200_000  # per level, whatever the duration
    batch_repeats: int = 5  # 64-in-one vs 64 sequential
    batch_texts: int = 64
    http_texts: int | None = None  # texts the load generator cycles through
    profile_s: float = 8.0  # py-spy profile of a service worker under load (0: none)
    padding_requests: int = 8  # multi-text requests per workload (padding section)
    padding_texts: int = 32  # texts per request
    padding_repeats: int = 3


MODES = {
    "full": Mode(
        "full", threads=(1, 2), repeats=5, repeat_s=0.6, level_s=5.0, warmup_s=1.0, http_repeats=3
    ),
    "quick": Mode(
        "quick",
        repeats=3,
        repeat_s=0.2,
        search_repeats=1,
        metric_limit=200,
        level_s=1.0,
        warmup_s=0.3,
        http_repeats=2,
        batch_repeats=2,
        profile_s=2.0,
        padding_requests=4,
        padding_repeats=2,
    ),
    "tiny": Mode(
        "tiny",
        batch_sizes=(1, 8),
        repeats=2,
        repeat_s=0.01,
        search_repeats=1,
        text_limit=64,
        metric_limit=16,
        concurrency=(1, 4),
        level_s=0.4,
        warmup_s=0.1,
        http_repeats=2,
        max_requests=400,
        batch_repeats=1,
        batch_texts=8,
        http_texts=64,
        profile_s=0.0,
        padding_requests=1,
        padding_texts=4,
        padding_repeats=1,
    ),
}


TARGET_CONCURRENCY = 32  # the HTTP targets are judged at this concurrency


def target_concurrency(levels: Sequence[int]) -> int | None:
    """The level the HTTP targets are judged at: the highest measured up to 32."""
    return max((c for c in levels if c <= TARGET_CONCURRENCY), default=None)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; nan when empty."""
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True)
class Calibration:
    calls: int  # calls per repeat
    long_call_s: float | None  # the warm-up call's seconds, when it alone filled a repeat


def calibrate(fn: Callable[[], object], seconds: float) -> Calibration:
    """How many calls of ``fn`` (after one warm-up call) fill about ``seconds``.

    A warm-up call that alone lasts ``seconds`` or more settles it (one call per repeat) and is
    not run again to be timed: a beam search over 128 sentences takes seconds.
    """
    started = time.perf_counter()
    fn()
    first = time.perf_counter() - started
    if first >= seconds:
        return Calibration(1, first)
    started = time.perf_counter()
    fn()
    once = max(time.perf_counter() - started, 1e-6)
    return Calibration(max(1, round(seconds / once)), None)


def time_calls(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - started


@dataclass
class MachineInfo:
    cpu: str
    cores: int
    usable_cores: int
    memory_gib: float
    system: str
    python: str
    versions: dict[str, str] = field(default_factory=dict)
    git: str = ""


def machine_info() -> MachineInfo:
    cpu = platform.processor() or "unknown"
    memory = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) / 2**20
    except OSError:
        pass
    versions = {}
    for name in ("onnxruntime", "torch", "numpy", "flask", "gunicorn", "aiohttp"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        git = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = ""
    return MachineInfo(
        cpu=cpu,
        cores=os.cpu_count() or 1,
        usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
        memory_gib=memory,
        system=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        versions=versions,
        git=git,
    )
