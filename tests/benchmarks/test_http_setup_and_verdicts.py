"""The HTTP section's set-up (worker counts, when /metrics is scraped) and the report's verdicts,
without models or real servers: gunicorn.conf.py is read, not run, and the load generator
talks to an in-thread Flask app."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask, jsonify, request

from benchmarks import loadgen, report, servers, serving
from benchmarks.common import MODES
from benchmarks.report import limits, sections
from benchmarks.serving import SERVICE_BATCHING


@contextmanager
def counting_server() -> Iterator[tuple[str, list[dict]]]:
    """A local server answering POST /v1/sentiment; yields its base URL and the bodies seen."""
    from werkzeug.serving import make_server

    app = Flask(__name__)
    bodies: list[dict] = []

    @app.post("/v1/sentiment")
    def answer():
        bodies.append(request.get_json())
        return jsonify({"results": [{"label": "positive"}]})

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", bodies
    finally:
        server.shutdown()
        thread.join(10)


def _conf_folders() -> set[str]:
    return {
        path
        for folder in (tempfile.gettempdir(), "/dev/shm")
        for prefix in ("rnn-metrics-", "rnn-reload-")
        for path in glob.glob(os.path.join(folder, prefix + "*"))
    }


def test_one_worker_count_from_gunicorn_conf_for_both_servers(tmp_path: Path) -> None:
    """Under a 1-CPU quota gunicorn.conf.py starts one worker; the benchmark decides the same
    count and gives it to the service (WEB_CONCURRENCY) and to the naive baseline (-w)."""
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # cgroup v2: 1 CPU
    environ = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environ.pop("RELOAD_SIGNAL_DIR", None)
    environ.pop("GUNICORN_THREADS", None)
    before_env, before_folders = dict(os.environ), _conf_folders()

    quota = servers.service_settings(environ, cgroup_root=str(tmp_path))
    explicit = servers.service_settings(
        environ | {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "6"}, cgroup_root=str(tmp_path)
    )

    assert (quota.workers, quota.threads) == (1, 4)
    assert "default" in quota.source
    assert (explicit.workers, explicit.threads) == (3, 6)
    assert explicit.source == "WEB_CONCURRENCY=3"
    # reading the config leaves no trace: no ORT_INTRA_OP_THREADS, no metrics/reload folders
    assert dict(os.environ) == before_env
    assert _conf_folders() == before_folders

    _, service_env = servers.service_command(8000, quota)
    naive, naive_env = servers.naive_command(8001, quota)
    assert service_env["WEB_CONCURRENCY"] == "1"
    assert naive[naive.index("-w") + 1] == "1" and "WEB_CONCURRENCY" not in naive_env
    assert naive_env[servers.NAIVE_TORCH_THREADS] == str(quota.intra_op_threads)


def test_the_measure_callback_runs_once_after_the_warm_up() -> None:
    seen: list[int] = []
    with counting_server() as (url, bodies):
        summary = loadgen.run_level(
            url + "/v1/sentiment",
            ["a", "b"],
            2,
            0.2,
            warmup_s=0.1,
            max_requests=30,
            on_measure=lambda: seen.append(len(bodies)),
        )
        total = len(bodies)
    (warm_up,) = seen
    assert warm_up > 0  # the warm-up had been answered when it ran
    assert summary["requests"] > 0 and summary["errors"] == 0
    assert total - warm_up == summary["requests"]  # every request after it was measured


def test_batching_statistics_leave_the_warm_up_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The /metrics difference covers exactly the measured requests of a level."""
    bodies_of: dict[str, list[dict]] = {}

    def scrape(url: str) -> dict[tuple[str, str], float]:
        count = float(len(bodies_of[url]))  # one single-text graph call per request
        labels = 'model="sentiment"'
        return {
            ("inference_executions_total", labels): count,
            ("inference_rows_total", labels): count,
        }

    monkeypatch.setattr(servers, "scrape", scrape)
    mode = replace(MODES["tiny"], level_s=0.2, warmup_s=0.1, max_requests=30)
    with counting_server() as (url, bodies):
        bodies_of[url] = bodies
        summary, stats = serving.measure_level(
            url, "/v1/sentiment", ["a", "b"], 2, mode, "sentiment"
        )
        naive, none = serving.measure_level(url, "/v1/sentiment", ["a"], 1, mode, None)
    assert summary["requests"] > 0 and len(bodies) > summary["requests"] + naive["requests"]
    assert stats is not None and stats["graph_calls"] == summary["requests"]
    assert stats["mean_rows"] == 1.0
    assert none is None and naive["requests"] > 0


def test_server_cpu_counts_the_process_and_its_children() -> None:
    """A parent waiting for a child that burns 0.3 s of CPU, then idles: the reading names both
    processes and holds the child's time (a gunicorn master and its workers)."""
    burn = (
        "import time\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "time.sleep(30)\n"
    )
    parent = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn!r}])\n"
    process = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 30
        reading = None
        while time.monotonic() < deadline:
            reading = servers.cpu_seconds(process.pid)
            kids = servers.children(process.pid)
            if reading is not None and kids and reading[1] >= 0.25:
                break
            time.sleep(0.05)
        assert reading is not None
        pids, seconds = reading
        assert process.pid in pids and set(servers.children(process.pid)) <= pids
        assert len(pids) == 2 and 0.25 <= seconds < 2.0  # CPU seconds, not another count
    finally:
        for kid in servers.children(process.pid):
            os.kill(kid, signal.SIGKILL)
        process.kill()
        process.wait()


def test_server_cpu_per_request_is_none_when_it_cannot_be_told() -> None:
    before, after = (frozenset({1, 2}), 1.0), (frozenset({1, 2}), 1.5)
    assert servers.cpu_ms_per_request(before, after, 100) == pytest.approx(5.0)
    assert servers.cpu_ms_per_request(before, (frozenset({1, 3}), 1.5), 100) is None  # replaced
    assert servers.cpu_ms_per_request(None, after, 100) is None
    assert servers.cpu_ms_per_request(before, after, 0) is None


def test_a_level_measures_the_servers_cpu_over_its_measured_part() -> None:
    """Here the "server" is this process (the in-thread app and the load generator alike)."""
    mode = replace(MODES["tiny"], level_s=0.3, warmup_s=0.1, max_requests=40)
    with counting_server() as (url, _):
        summary, _ = serving.measure_level(
            url, "/v1/sentiment", ["a"], 2, mode, None, server_pid=os.getpid()
        )
        plain, _ = serving.measure_level(url, "/v1/sentiment", ["a"], 1, mode, None)
    assert summary["requests"] > 0 and summary["server_cpu_ms"] > 0
    assert "server_cpu_ms" not in plain


def test_a_figure_missing_from_one_repeat_is_the_median_of_the_others() -> None:
    merged = serving.median_fields(
        [dict(server_cpu_ms=2.0, x=1), dict(server_cpu_ms=None, x=2), dict(server_cpu_ms=4.0, x=3)]
    )
    assert merged == {"server_cpu_ms": 3.0, "x": 2}
    assert serving.median_fields([dict(server_cpu_ms=None, x=1)]) == {"x": 1}


def _quantization_row(int8_misc: float, speedup: float = 1.5) -> dict:
    return dict(
        model="ner",
        fp32_mb=4.0,
        int8_mb=1.0,
        speed=[dict(variant="", batch=1, fp32_ms=1.5, int8_ms=1.5 / speedup, speedup=speedup)],
        fp32={"dev_f1": 80.0, "dev_f1_MISC": 70.0, "dev_f1_PER": 90.0},
        int8={"dev_f1": 79.8, "dev_f1_MISC": int8_misc, "dev_f1_PER": 90.0},
        headline="dev_f1",
        metric_sizes={"conll_valid": 16},
    )


def test_int8_verdict_counts_every_metric_even_those_the_table_leaves_out() -> None:
    lossy = _quantization_row(int8_misc=69.0)  # overall F1 -0.2, MISC F1 -1.0
    assert report.quantization_verdict(_quantization_row(int8_misc=69.8)) == "yes"
    assert report.quantization_verdict(lossy) == "no (too inaccurate: dev_f1_MISC)"
    assert (
        report.quantization_verdict(_quantization_row(int8_misc=69.0, speedup=1.1))
        == "no (too slow; too inaccurate: dev_f1_MISC)"
    )
    results = {"quantization": [lossy], "mode": {"metric_limit": 16}}
    table = "\n".join(sections.quantization_table(results))
    assert "| dev_f1 | 80.00 | 79.80 | -0.20 | no (too inaccurate: dev_f1_MISC) |" in table
    assert "| dev_f1_MISC |" not in table  # still one row per model's overall metrics


def _limits_text(mean_rows: float) -> str:
    results = {
        "targets": [dict(target="t", measured="m", met=False, kind="http")],
        "machine": {"usable_cores": 2},
        "http": {
            "load": [
                dict(server=SERVICE_BATCHING, concurrency=32, throughput=500.0, client_cpu=0.2)
            ],
            "batching_stats": [
                dict(
                    server=SERVICE_BATCHING,
                    concurrency=32,
                    mean_rows=mean_rows,
                    mean_compute_ms=2.0,
                    mean_queue_ms=1.0,
                    graph_calls=10.0,
                )
            ],
            "servers": {SERVICE_BATCHING: dict(workers=[{}, {}], worker_count=2, threads=4)},
        },
    }
    return "\n".join(limits.explain(results))


def test_the_thread_cap_is_named_as_the_limit_only_when_batches_come_close_to_it() -> None:
    near = _limits_text(3.5)
    assert (
        "Batches stay small (3.5 rows per call, of at most 4: one per request thread of a "
        "worker, GUNICORN_THREADS=4) because only 2 workers × 4 request threads can be inside "
        "the service at once"
    ) in near
    far = _limits_text(1.2)
    assert "because" not in far.split("Batches", 1)[1]
    assert (
        "Batches held 1.2 rows per call on average (of at most 4: one per request thread of a "
        "worker, GUNICORN_THREADS=4; 2 workers × 4 request threads can be inside the service at "
        "once)."
    ) in far
