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

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

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


def record(pid: int, seconds: float, rate: int = 100) -> str:
    """py-spy's raw output (collapsed stacks) for ``pid`` over ``seconds``; raises
    :class:`RuntimeError` saying why when py-spy is missing or cannot attach."""
    command = executable()
    if command is None:
        raise RuntimeError("py-spy is not installed")
    with tempfile.TemporaryDirectory(prefix="pyspy-") as folder:
        out = Path(folder) / "profile.txt"
        options = ["--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        options += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
        options += ["--nonblocking", "--gil"]
        try:
            done = subprocess.run(
                [command, "record", *options], capture_output=True, text=True, timeout=seconds + 60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"py-spy failed: {exc}") from None
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        return out.read_text()


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
