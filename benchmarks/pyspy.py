"""Where a server worker's Python time goes under load: py-spy samples grouped by part of the
request path.

py-spy (a sampling profiler that attaches to a running process) records one worker while the
load generator keeps it busy, sampling only the thread that holds the GIL (``--gil``): a worker
runs Python on one thread at a time, so this is the time that bounds its throughput; ONNX Runtime
and PyTorch kernels run without the GIL and show only their Python-side cost. Each sample is
charged to the first part of the request path found walking from the innermost frame outwards,
so logging called from a Flask hook counts as logging, not as Flask.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

# (part, substrings of a frame "function (path:line)"), matched innermost frame first; py-spy
# writes installed packages' paths from the package folder on ("flask/app.py").
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ONNX Runtime (graph call)", ("onnxruntime/",)),
    ("PyTorch (model)", ("(torch/",)),
    ("logging", ("service/log.py", "(logging/")),
    ("metrics (prometheus_client)", ("(prometheus_client/", "service/metrics.py")),
    ("text encoding", ("service/text/",)),
    ("validation and JSON (pydantic)", ("(pydantic", "api/body.py", "api/responses.py")),
    ("batcher (taking turns, gathering)", ("service/runtime/batcher.py",)),
    ("predictor (padding, results)", ("service/predictors/",)),
    ("Flask / werkzeug", ("(flask/", "(werkzeug/")),
    ("gunicorn (sockets, HTTP parsing, thread pool)", ("(gunicorn/", "(concurrent/futures/")),
)
OTHER = "other"


def executable() -> str | None:
    """py-spy beside this Python (a virtual environment's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def available() -> bool:
    return executable() is not None


def record(pid: int, seconds: float, rate: int = 100) -> Path | None:
    """py-spy's raw (collapsed stacks) output for ``pid`` over ``seconds``; None if it failed
    (not installed, or not allowed to attach)."""
    out = Path(tempfile.mkdtemp(prefix="pyspy-")) / "profile.txt"
    command = [
        executable() or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
    ]
    command += [
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        "--gil",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("py-spy failed: %s", exc)
        return None
    if done.returncode != 0 or not out.is_file():
        log.warning("py-spy failed (%s): %s", done.returncode, done.stderr.strip()[-500:])
        return None
    return out


def part_of(stack: list[str]) -> str:
    """The part of the request path that a sampled stack (outermost frame first) is in."""
    for frame in reversed(stack):
        for part, needles in PARTS:
            if any(needle in frame for needle in needles):
                return part
    return OTHER


def shares(raw: str) -> list[tuple[str, float]]:
    """Share of the samples per part, largest first, from py-spy's raw format (one line per
    distinct stack: frames joined by ``;``, then a space and the sample count)."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            counts[part_of(stack.split(";"))] += int(count)
    total = sum(counts.values())
    return [(part, n / total) for part, n in counts.most_common()] if total else []
