"""The benchmark suite in its tiny mode, writing to a temporary folder, so that it cannot rot.

The in-process sections run on the real exported models (translation included: both searches,
both graphs quantized) with a few dev texts; the load generator runs against an in-thread Flask
app (starting gunicorn three times would take longer
than the rest together: ``python -m benchmarks --tiny`` does that end to end).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask, jsonify, request

from benchmarks import inprocess, loadgen, padding, pyspy, report, servers
from benchmarks.__main__ import main
from benchmarks.common import MODES, percentile
from benchmarks.models import TranslationBench, available_models
from benchmarks.serving import (
    FLOOR,
    NAIVE,
    SERVERS,
    SERVICE_BATCHING,
    SERVICE_NO_BATCHING,
    install_sizes,
)


@pytest.fixture(autouse=True, scope="module")
def _committed_models() -> None:
    """Fail, not skip, without the committed models: a lost checkpoint must not go unseen."""
    found = [m.name for m in available_models()]
    assert len(found) == 3, (
        f"the benchmarks need every exported model and its committed checkpoint; found {found}"
    )


@contextmanager
def echo_server(bodies: list[dict] | None = None) -> Iterator[str]:
    """A local server answering POST /v1/sentiment; request bodies are appended to ``bodies``."""
    from werkzeug.serving import make_server

    app = Flask(__name__)

    @app.post("/v1/sentiment")
    def answer():
        if bodies is not None:
            bodies.append(request.get_json())
        if request.get_json()["texts"][0] == "fail":
            return jsonify({"error": "no"}), 500
        return jsonify({"results": [{"label": "positive"}]})

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/sentiment"
    finally:
        server.shutdown()
        thread.join(10)


def test_tiny_in_process_run_writes_the_page(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    sections = "inprocess,quantization,padding,footprint"
    results = main(["--tiny", "--sections", sections, "--doc", str(doc)])
    text = doc.read_text()
    assert "## Padding-aware batching" in text
    assert "| sentiment, IMDB reviews | 4 | 0.8 |" in text
    assert len(results["padding"]) == 3
    assert "## In process: ONNX Runtime vs PyTorch eager" in text
    assert "## Dynamic int8 quantization" in text
    assert "| serving (`pip install .`, no torch)" in text
    assert (tmp_path / "bench-batch-size.png").stat().st_size > 0
    assert {r["model"] for r in results["inprocess"]} == {"sentiment", "ner", "translation"}
    assert all(r["sentences_per_s"] > 0 for r in results["inprocess"])
    assert [t["kind"] for t in results["targets"]] == ["ort", "ort", "ort"]
    for row in results["quantization"]:
        assert row["int8_mb"] < row["fp32_mb"]
        assert row["headline"] in row["fp32"] and row["headline"] in row["int8"]
    # translation: both searches at every batch size, both backends; greedy is the headline
    cells = {
        (r["variant"], r["batch"], r["backend"])
        for r in results["inprocess"]
        if r["model"] == "translation"
    }
    assert cells == {
        (v, b, backend)
        for v in ("greedy", "beam 5")
        for b in MODES["tiny"].batch_sizes
        for backend in ("onnxruntime", "pytorch")
    }
    (target,) = [t for t in results["targets"] if t["model"] == "translation"]
    assert target["target"].startswith("translation (greedy): ONNX Runtime ≥ 2× PyTorch")
    assert "beam 5: " in target["measured"]
    (quantized,) = [q for q in results["quantization"] if q["model"] == "translation"]
    assert {(s["variant"], s["batch"]) for s in quantized["speed"]} == {
        ("greedy", 1),
        ("beam 5", 1),
    }
    assert set(quantized["fp32"]) >= {"dev_bleu_greedy", "dev_bleu_beam5"}
    assert 0 < quantized["fp32"]["dev_bleu_beam5"] <= 100
    assert quantized["metric_sizes"] == {"multi30k_val": MODES["tiny"].metric_limit}
    assert "| translation (beam 5) | 1 | 8 |" in text
    assert "beam 5, batch 1: " in text

    # The raw results lie next to the page, and the page can be written again from them alone.
    raw = tmp_path / "bench.json"
    assert "The run's raw results are in [bench.json](bench.json)." in text
    again = tmp_path / "again" / "bench.md"
    main(["--render", str(raw), "--doc", str(again)])
    rendered = f"This page was written again from them by `python -m benchmarks --render {raw} "
    assert again.read_text() == text.replace(
        "[bench.json](bench.json).", f"[{raw}]({raw}). {rendered}--doc {again}`.", 1
    )
    assert (again.parent / "bench-batch-size.png").stat().st_size > 0


def test_load_generator_counts_requests_and_errors() -> None:
    bodies: list[dict] = []
    with echo_server() as url:
        ok = loadgen.run_level(url, ["good", "fine"], 2, 0.3, warmup_s=0.05, max_requests=40)
        bad = loadgen.run_level(url, ["fail"], 1, 0.2, warmup_s=0.0, max_requests=5)
    with echo_server(bodies) as url:
        timing = loadgen.one_vs_many(url, ["a", "b", "c"], repeats=1, options={"beam_size": 5})
    assert 0 < ok["requests"] <= 40 and ok["errors"] == 0
    assert ok["p50_ms"] <= ok["p95_ms"] <= ok["p99_ms"]
    assert bad["requests"] == 0 and 0 < bad["errors"] <= 5
    assert bad["error_samples"][0] == "HTTP 500"
    assert len(timing["one_request_s"]) == len(timing["sequential_s"]) == 1
    # the connection-opening request, one with every text, then one per text
    assert [b["texts"] for b in bodies] == [["a"], ["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert all(b["beam_size"] == 5 for b in bodies)


def test_translation_request_body_is_what_the_endpoint_takes() -> None:
    from service.schemas import TranslationRequest

    model = TranslationBench()
    beams = [
        TranslationRequest.model_validate({"texts": model.http_texts(2), **options}).beam_size
        for options in model.request_options
    ]
    assert beams == [5, 1]  # the API's default first, then greedy
    assert model.endpoint == "/v1/translate"


def test_worker_profile_samples_count_for_the_innermost_part_of_the_request_path() -> None:
    raw = "\n".join(
        [
            "handle (gunicorn/workers/gthread.py:1);wsgi_app (flask/app.py:2);"
            "echo_and_log (service/log.py:3);emit (logging/__init__.py:4) 3",
            "handle (gunicorn/workers/gthread.py:1);run (onnxruntime/capi/session.py:5) 1",
            "handle (gunicorn/workers/gthread.py:1);wsgi_app (flask/app.py:2) 4",
            "run (threading.py:982) 2",
        ]
    )

    assert pyspy.shares(raw) == [
        ("Flask / werkzeug", 0.4),
        ("logging", 0.3),
        ("other", 0.2),
        ("ONNX Runtime (graph call)", 0.1),
    ]
    assert pyspy.shares("") == []


def test_a_long_first_call_is_the_first_repeat() -> None:
    """A runner whose warm-up call fills a repeat is not run once more to be timed; short
    runners are warmed up and calibrated first."""
    calls = {"slow": 0, "fast": 0}

    def runner(name: str, seconds: float):
        def run(i: int) -> None:
            calls[name] += 1
            time.sleep(seconds)

        return run

    slow = inprocess.side_by_side(
        {"a": runner("slow", 0.03), "b": runner("slow", 0.03)}, 1, repeats=2, repeat_s=0.02
    )
    assert calls["slow"] == 2 * 2 and all(v >= 0.03 for v in slow.values())
    # repeat_s well above a scheduling hiccup: a warm-up call that lasted it would count as long
    inprocess.side_by_side({"a": runner("fast", 0.0)}, 1, repeats=2, repeat_s=0.5)
    assert calls["fast"] > 2 + 2  # warm-up, calibration, then repeats of several calls


def test_translation_profile_covers_both_graphs() -> None:
    shares = dict(inprocess.ort_profile(TranslationBench(), batch=1, calls=2))
    assert sum(shares.values()) == pytest.approx(1.0)
    assert any(op in shares for op in ("GRU", "LSTM", "MatMul", "Gemm"))


def test_load_generator_refuses_remote_hosts() -> None:
    with pytest.raises(ValueError, match="local"):
        loadgen.run_level("http://example.com/v1/sentiment", ["x"], 1, 0.1)


def test_http_targets_and_tables_from_results(tmp_path: Path) -> None:
    def level(
        server: str, c: int, rps: float, errors: int = 0, cpu_ms: float | None = None
    ) -> dict:
        return dict(
            server=server,
            concurrency=c,
            requests=100,
            errors=errors,
            throughput=rps,
            p50_ms=10.0,
            p95_ms=20.0,
            p99_ms=50.0,
            client_cpu=0.3,
            error_samples=[],
        ) | ({} if cpu_ms is None else {"server_cpu_ms": cpu_ms})

    results = {
        "command": "python -m benchmarks --tiny",
        "date": "today",
        "mode": vars(MODES["tiny"]) | {"concurrency": (1, 32)},
        "machine": dict(
            cpu="cpu",
            cores=2,
            usable_cores=2,
            memory_gib=1.0,
            system="Linux",
            python="3",
            versions={},
            git="abc",
        ),
        "http": {
            "load": [
                level(SERVICE_BATCHING, 32, 900.0),
                level(SERVICE_NO_BATCHING, 32, 300.0),
                level(NAIVE, 32, 100.0, errors=1),
            ],
            "batching_stats": [
                dict(
                    server=SERVICE_BATCHING,
                    concurrency=32,
                    mean_rows=8.0,
                    mean_compute_ms=2.0,
                    mean_queue_ms=1.0,
                    graph_calls=10.0,
                )
            ],
            "worker_profiles": {
                SERVICE_BATCHING: dict(
                    concurrency=32, seconds=8.0, shares=[("logging", 0.75), ("other", 0.25)]
                ),
                NAIVE: dict(concurrency=32, shares=[], note="py-spy is not installed"),
            },
            "one_vs_many": [
                dict(model="sentiment", texts=64, one_s=0.01, many_s=0.2, ratio=20.0),
                dict(
                    model="translation",
                    options={"beam_size": 5},
                    texts=64,
                    one_s=2.0,
                    many_s=2.4,
                    ratio=1.2,
                ),
                dict(
                    model="translation",
                    options={"beam_size": 1},
                    texts=64,
                    one_s=0.2,
                    many_s=1.2,
                    ratio=6.0,
                ),
            ],
            "servers": {
                SERVICE_BATCHING: dict(
                    startup_s=2.0,
                    workers=[{"rss": 100.0, "pss": 80.0}],
                    worker_count=1,
                    threads=4,
                    command="gunicorn ...",
                    env={"BATCHING": "true", "WEB_CONCURRENCY": "1"},
                ),
                NAIVE: dict(
                    startup_s=3.0,
                    workers=[{"rss": 300.0, "pss": 250.0}],
                    worker_count=1,
                    threads=1,
                    command="gunicorn -w 1 ...",
                    env={},
                ),
            },
            "workers": 1,
            "workers_source": "WEB_CONCURRENCY=1",
        },
        "install": install_sizes(),
        "profiles": [],
        "elapsed_s": 1.0,
    }
    results["targets"] = report.targets(results)
    by_name = {t["target"]: t for t in results["targets"]}
    assert by_name["sentiment over HTTP, concurrency 32: service ≥ 3× naive baseline"]["met"]
    assert by_name["sentiment over HTTP, concurrency 32: batching on ≥ 2× batching off"]["met"]
    assert not by_name["zero errors (every server, every level)"]["met"]
    assert not by_name["service (batching): p99 ≤ 4× p50 at every concurrency"]["met"]
    translation = [
        t
        for t in results["targets"]
        if t["target"]
        == "Translation: one request with 64 texts ≥ 5× the throughput of 64 sequential requests"
    ]
    assert [(t["measured"], t["met"]) for t in translation] == [
        ("1.20× (beam_size 5)", False),
        ("6.00× (beam_size 1)", True),
    ]
    assert not any("sentiment: one request" in name for name in by_name)
    doc = tmp_path / "b.md"
    report.write(results, doc, tmp_path)
    text = doc.read_text()
    assert "**missed**" in text and "### What limits the missed targets" in text
    assert (
        "- **Servers**: every server ran 1 worker process (WEB_CONCURRENCY=1), 4 request "
        "threads each for the service, one request at a time each for the naive one"
    ) in text
    assert "| translation | 64 | `beam_size`: 5 | 2,000.0 | 2,400.0 | 1.20× |" in text
    assert "| translation | 64 | `beam_size`: 1 | 200.0 | 1,200.0 | 6.00× |" in text
    assert "| part | service (batching) |\n|---|---|\n| logging | 75% |\n| other | 25% |" in text
    assert (
        "**translation (beam_size 5), one request vs 64 requests**: 31.2 ms per text in one request"
        in text
    )
    assert "translation (beam_size 1), one request" not in text  # met: nothing to explain
    assert (tmp_path / "b-throughput.png").exists() and (tmp_path / "b-latency.png").exists()

    # Batching barely helps: the report gives the graph's own batching gain as the ceiling.
    results["http"]["load"][1] = level(SERVICE_NO_BATCHING, 32, 800.0)
    results["inprocess"] = [
        dict(
            model="sentiment",
            backend=backend,
            threads=1,
            batch=b,
            sentences_per_s=v / slower,
            ms_per_batch=1000 * b * slower / v,
        )
        for b, v in [(1, 2000.0), (8, 3000.0), (32, 4000.0)]
        for backend, slower in [("onnxruntime", 1), ("pytorch", 3)]
    ]
    results["targets"] = report.targets(results)
    on_off = {t["target"]: t for t in results["targets"]}[
        "sentiment over HTTP, concurrency 32: batching on ≥ 2× batching off"
    ]
    assert not on_off["met"] and on_off["measured"] == "1.12×"
    report.write(results, doc, tmp_path)
    assert (
        "**sentiment, batching on vs off**: in process, ONNX Runtime runs (1 thread) one call: "
        "2,000 sentences/s at batch 1, at best 4,000 (batch 32, 2.00×)"
    ) in doc.read_text()

    # ... and the ORT profiler's cost per text, by operator, at each batch size says where.
    outside = inprocess.OUTSIDE_KERNELS
    results["batch_profiles"] = [
        dict(
            model="sentiment",
            rows=[
                dict(batch=1, us_per_text={"LSTM": 400.0, "Gather": 10.0, outside: 100.0}),
                dict(batch=8, us_per_text={"LSTM": 300.0, "Gather": 5.0, outside: 12.4}),
            ],
        )
    ]
    report.write(results, doc, tmp_path)
    assert (
        "- **sentiment, where the graph's time per text goes** (ORT profiler, 1 thread, µs per "
        "text at batch 1 → 8): LSTM 400 → 300; Gather 10 → 5; outside kernels 100 → 12."
    ) in doc.read_text()

    # Short of 3× the naive baseline: the floor says what Flask and gunicorn leave for the rest.
    results["http"]["load"][2] = level(NAIVE, 32, 400.0)
    results["http"]["load"].append(level(FLOOR, 32, 1600.0))
    results["targets"] = report.targets(results)
    report.write(results, doc, tmp_path)
    assert (
        "- **Floor** (c=32): floor (Flask, no model), under the service's gunicorn settings, "
        "answered 1,600.0 requests/s, 4.00× the naive baseline, i.e. at most 1.25 ms of the 2 "
        "cores' time per request (the load generator's 0.19 ms included). 3× the naive baseline "
        "(1,200.0 requests/s) allows 1.67 ms: 0.42 ms per request for all the service does beyond "
        "the floor (model, text encoding, validation, batching, logging, metrics). The batching "
        "service answered 900.0 requests/s (56% of the floor): at most 2.22 ms per request, 0.97 "
        "ms beyond the floor (the load generator's share: 0.33 ms)."
    ) in doc.read_text()
    results["http"]["load"][-1] = level(FLOOR, 32, 1000.0)
    report.write(results, doc, tmp_path)
    assert (
        "3× the naive baseline (1,200.0 requests/s) is more than the floor answers: with these "
        "gunicorn settings, no change to the service's own code reaches it on this machine."
    ) in doc.read_text()
    assert "**CPU per request**" not in doc.read_text()  # not measured: no line, no column
    assert "| 1,000.0 | 10.00 | 20.00 | 50.00 | 5.00 | 0 | 100 | 30% |\n" in doc.read_text()

    # The servers' own CPU per request says how far the service is from 3×, whatever else ran.
    load = results["http"]["load"]
    load[0], load[2], load[-1] = (
        level(SERVICE_BATCHING, 32, 900.0, cpu_ms=1.8),
        level(NAIVE, 32, 400.0, cpu_ms=4.0),
        level(FLOOR, 32, 1000.0, cpu_ms=1.0),
    )
    report.write(results, doc, tmp_path)
    text = doc.read_text()
    assert (
        "- **CPU per request** (c=32; the server's own processes, from /proc, with the load "
        "generator's share in brackets): naive (Flask + PyTorch eager) 4.00 ms (0.75 ms), service "
        "(batching) 1.80 ms (0.33 ms), floor (Flask, no model) 1.00 ms (0.30 ms). Per request, "
        "the naive baseline cost 2.23× what the service did, server and load generator together. "
        "3× the naive baseline's throughput (1,200.0 requests/s) leaves 1.67 ms of the 2 cores' "
        "time per request, 1.33 ms of it for the service's own processes; they used 0.47 ms more."
    ) in text
    assert "| 900.0 | 10.00 | 20.00 | 50.00 | 5.00 | 0 | 100 | 30% | 1.80 |" in text
    assert "| 800.0 | 10.00 | 20.00 | 50.00 | 5.00 | 0 | 100 | 30% | – |" in text  # not measured
    load[0] = level(SERVICE_BATCHING, 32, 900.0, cpu_ms=1.2)
    report.write(results, doc, tmp_path)
    assert (
        "1.33 ms of it for the service's own processes; they used less, so the throughput missed "
        "went to neither server nor load generator (idle cores, or other processes on a shared "
        "machine)."
    ) in doc.read_text()
    load[2] = level(NAIVE, 32, 2500.0, cpu_ms=0.2)  # 3× of it: less than the client's share
    report.write(results, doc, tmp_path)
    assert (
        "leaves 0.27 ms of the 2 cores' time per request, no more than the load generator's "
        "share alone."
    ) in doc.read_text()


def test_the_graph_cost_per_text_is_profiled_by_operator_at_each_batch_size() -> None:
    (sentiment,) = available_models(["sentiment"])

    rows = inprocess.ort_cost_per_text(sentiment, [1, 8], texts=16)

    assert [r["batch"] for r in rows] == [1, 8]
    for row in rows:
        assert row["us_per_text"]["LSTM"] > 0  # the recurrent kernel is timed
        assert inprocess.OUTSIDE_KERNELS in row["us_per_text"]


def test_the_floor_answers_in_the_services_shape() -> None:
    """The floor stands in for the service's HTTP cost: same endpoint, body and answer shape."""
    from benchmarks.floor_server import app
    from service.schemas import SentimentResponse

    response = app.test_client().post("/v1/sentiment", json={"texts": ["a", "b", "c"]})

    assert response.status_code == 200
    assert len(SentimentResponse.model_validate(response.get_json()).results) == 3


def test_padding_comparison_runs_each_workload_with_and_without_min_fill() -> None:
    rows = padding.measure(requests=1, texts=4, repeats=1)

    assert [row["workload"] for row in rows] == list(padding.workloads(1, 4))
    for row in rows:
        assert row["min_fill"] == 0.8  # sentiment's and NER's default
        assert row["ms"] > 0 and row["ms_without"] > 0
        assert row["speedup"] == pytest.approx(row["ms_without"] / row["ms"])
    (ner,) = padding.measure(requests=1, texts=2, repeats=1, tasks={"ner"})
    assert ner["workload"].startswith("NER")


def test_percentile() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 100) == 2.0


def test_a_level_over_repeats_is_medians_with_totals_of_requests_and_errors() -> None:
    from benchmarks.serving import median_level

    def level(rps: float, requests: int, errors: int, samples: list[str]) -> dict:
        return dict(
            concurrency=8,
            requests=requests,
            errors=errors,
            throughput=rps,
            p50_ms=1000 / rps,
            client_cpu=0.1,
            error_samples=samples,
        )

    merged = median_level(
        [level(100.0, 10, 0, []), level(300.0, 30, 1, ["503"]), level(200.0, 20, 0, [])]
    )

    assert merged["throughput"] == 200.0 and merged["p50_ms"] == 5.0
    assert (merged["requests"], merged["errors"], merged["repeats"]) == (60, 1, 3)
    assert merged["concurrency"] == 8 and isinstance(merged["concurrency"], int)
    assert merged["error_samples"] == ["503"]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "worker"), [(FLOOR, "gthread"), (NAIVE, "sync")])
def test_the_baseline_servers_start_as_the_report_describes_them(
    tmp_path: Path, name: str, worker: str
) -> None:
    """The floor under the service's gunicorn.conf.py (whose hooks meet an app that is not the
    service), and the naive baseline with gunicorn's defaults (sync workers), as the page
    says, not the service's gunicorn.conf.py, which gunicorn reads from the repository by
    itself."""
    make_command, env = SERVERS[name]
    port = servers.free_port()
    command, command_env = make_command(port, servers.ServiceSettings(1, 4, "one worker", 1))

    with servers.running(name, command, command_env | env, port, tmp_path, workers=1) as server:
        assert len(server.workers) == 1

    assert f"Using worker: {worker}" in server.log.read_text()
