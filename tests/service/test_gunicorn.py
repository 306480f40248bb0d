"""The repository's gunicorn.conf.py serving the committed models over real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.service.live_server import free_port, http_json, running_server

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gunicorn_serves_the_committed_models_over_http(
    real_model_dir, clean_env, tmp_path
) -> None:
    port = free_port()
    env = {**clean_env, "PORT": str(port), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "2"}
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
    texts = ["A moving, beautifully acted film.", "Dull, predictable and far too long."]

    ner_text = "EU rejects German call to boycott British lamb."

    with running_server(command, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path) as server:
        status, body = http_json("POST", f"{server.url}/v1/sentiment", {"texts": texts})
        error_status, error = http_json("POST", f"{server.url}/v1/sentiment", {"texts": []})
        ner_status, ner = http_json("POST", f"{server.url}/v1/ner", {"texts": [ner_text]})

    assert status == 200, body
    assert body["model"]["name"] == "sentiment"
    assert len(body["results"]) == 2
    assert all(set(r["scores"]) == {"negative", "positive"} for r in body["results"])
    assert error_status == 422
    assert error["error"]["code"] == "validation_failed"
    requests = [e for e in server.json_logs() if e["message"] == "request"]
    assert {(e["method"], e["path"], e["status"]) for e in requests} >= {
        ("POST", "/v1/sentiment", 200),
        ("POST", "/v1/sentiment", 422),
    }  # one JSON line per request (gunicorn's own access log is off by default)
    assert ner_status == 200, ner
    entities = ner["results"][0]["entities"]
    assert ("ORG", "EU") in [(e["type"], e["text"]) for e in entities]
    assert all(ner_text[e["start"] : e["end"]] == e["text"] for e in entities)


@pytest.mark.slow
def test_a_request_whose_client_left_while_it_waited_is_a_499_and_never_runs(
    real_model_dir, clean_env, tmp_path
) -> None:
    """Under gunicorn a request queued behind others finds out, from its connection, that its
    client gave up (here a 1 s client timeout), and its text does not run."""
    port = free_port()
    env = {
        **clean_env,
        "PORT": str(port),
        "MODELS": "translation",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "10",
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
    things = ["dog", "child", "woman", "man", "bike", "ball", "boat", "horse"]
    places = ["beach", "park", "street", "river", "field", "city", "lake", "garden"]
    texts = [
        f"A {t} in a red shirt is near the {p} with two friends." for t in things for p in places
    ]
    busy = {"texts": texts, "beam_size": 5}  # 64 sentences: about a second of decoding each

    with running_server(command, cwd=REPO_ROOT, env=env, port=port, log_dir=tmp_path) as server:
        url = f"{server.url}/v1/translate"
        with ThreadPoolExecutor(8) as pool:
            queued = [pool.submit(http_json, "POST", url, busy, 120) for _ in range(8)]
            time.sleep(0.5)  # they are in the model's queue
            with pytest.raises(TimeoutError):
                http_json("POST", url, {"texts": ["Hi."]}, timeout=1)
            assert all(f.result()[0] == 200 for f in queued)
        _, stats = http_json("GET", f"{server.url}/v2/models/translation/stats")
        lines = [e for e in server.json_logs() if e.get("path") == "/v1/translate"]

    assert sorted(e["status"] for e in lines) == [200] * 8 + [499]
    assert stats["model_stats"][0]["inference_count"] == 8 * len(texts)  # not "Hi."


@pytest.mark.slow
def test_invalid_settings_stop_gunicorn_with_one_json_line_per_worker(clean_env) -> None:
    env = {**clean_env, "PORT": str(free_port()), "WEB_CONCURRENCY": "2", "BATCHING": "maybe"}
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    errors = [e for e in lines if e["message"].startswith("invalid settings: ")]
    assert [e["message"] for e in errors] == [
        "invalid settings: BATCHING='maybe': Input should be a valid boolean, unable to "
        "interpret input"
    ] * 2
    assert {e["level"] for e in errors} == {"ERROR"}
    # no worker loaded the app: no traceback of it, no plain-text copy of the message
    assert "Exception in worker process" not in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("invalid settings")]


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="the folders go to /dev/shm")
def test_a_refused_start_leaves_no_folder_behind(clean_env) -> None:
    """gunicorn's on_exit hook does not run when its on_starting stops it: the metrics and
    reload folders that the config made were left in /dev/shm, two per attempt."""
    port = free_port()
    env = {**clean_env, "PORT": str(port), "GRPC_PORT": str(port + 1), "HEALTH_PORT": str(port + 1)}
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"]
    shared = Path("/dev/shm")
    before = set(shared.glob("rnn-*"))

    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)

    assert "HEALTH_PORT and GRPC_PORT are both" in result.stderr
    assert set(shared.glob("rnn-*")) <= before
