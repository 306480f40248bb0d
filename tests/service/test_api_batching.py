"""Dynamic batching through the HTTP API: concurrent clients, back-pressure and deadlines."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from service import REGISTRY_KEY
from service.disconnects import GUNICORN_SOCKET, peer_alive
from service.runtime import batcher as batcher_module
from service.runtime.batcher import DynamicBatcher, InlineBatches

SENTIMENT_TEXTS = [
    "great",
    "bad bad movie the the the",
    "awful",
    "the movie was good",
    "good good bad",
    "movie",
    "great great great great awful awful awful awful and more",
    "the the",
]
NER_TEXTS = [
    "EU rejects German call to boycott British lamb.",
    "Peter Blackburn visited New York. Acme Corp said no!",
    "Zürich",
    "NATO said Acme Corp visited 東京.",
    "the lamb .",
]


class RecordingGraph:
    """Wraps a predictor's graph call: records batch sizes, optionally slows or blocks it."""

    def __init__(self, run, delay_s: float = 0.0):
        self.run = run
        self.delay_s = delay_s
        self.rows: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, *args):
        self.entered.set()
        self.gate.wait(10)
        time.sleep(self.delay_s)
        feeds = args[-1]
        self.rows.append(len(feeds["lengths"]))
        return self.run(*args)


def record_graph(app: Flask, model: str, monkeypatch, delay_s: float = 0.0) -> RecordingGraph:
    session = app.extensions[REGISTRY_KEY].models[model].predictor.session
    recorder = RecordingGraph(session.run, delay_s)
    monkeypatch.setattr(session, "run", recorder)
    return recorder


def post_all(app: Flask, url: str, bodies: list[dict], threads: int) -> list:
    def post(body: dict):
        response = app.test_client().post(url, json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["results"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, bodies))


@pytest.fixture
def batching_app(app_factory, tiny_ner_model_dir: Path) -> Flask:
    return app_factory(tiny_ner_model_dir, batch_max_size=16, batch_max_queue_delay_ms=20)


def test_batching_is_on_by_default_and_off_with_the_setting(app_factory, tiny_model_dir) -> None:
    on = app_factory(tiny_model_dir).extensions[REGISTRY_KEY]
    off = app_factory(tiny_model_dir, batching=False).extensions[REGISTRY_KEY]

    assert isinstance(on.models["sentiment"].predictor.scheduler, DynamicBatcher)
    assert isinstance(off.models["sentiment"].predictor.scheduler, InlineBatches)


@pytest.mark.parametrize(
    ("url", "texts"), [("/v1/sentiment", SENTIMENT_TEXTS), ("/v1/ner", NER_TEXTS)]
)
def test_concurrent_clients_get_exactly_what_they_get_alone(
    batching_app: Flask, monkeypatch, url: str, texts: list[str]
) -> None:
    model = url.rsplit("/", 1)[1]
    alone = [post_all(batching_app, url, [{"texts": [text]}], 1)[0][0] for text in texts]
    graph = record_graph(batching_app, model, monkeypatch, delay_s=0.01)
    # 40 clients, each sending 1-3 texts in a different mix and order
    bodies = [
        {"texts": [texts[(i + k * 3) % len(texts)] for k in range(1 + i % 3)]} for i in range(40)
    ]

    answers = post_all(batching_app, url, bodies, threads=20)

    for body, results in zip(bodies, answers, strict=True):
        assert results == [alone[texts.index(text)] for text in body["texts"]]  # exactly equal
    assert max(graph.rows) > 3  # rows of several requests ran in one call


def test_batch_sizes_grow_with_concurrency(batching_app: Flask, monkeypatch) -> None:
    graph = record_graph(batching_app, "sentiment", monkeypatch, delay_s=0.01)
    bodies = [{"texts": ["a great movie"]}] * 24

    post_all(batching_app, "/v1/sentiment", bodies, threads=1)
    sequential = list(graph.rows)
    graph.rows.clear()
    post_all(batching_app, "/v1/sentiment", bodies, threads=12)
    concurrent = list(graph.rows)

    assert sequential == [1] * 24
    assert len(concurrent) < 24 and max(concurrent) >= 4
    assert sum(concurrent) == 24


def test_batching_off_runs_each_request_on_its_own(app_factory, tiny_model_dir, monkeypatch):
    app = app_factory(tiny_model_dir, batching=False)
    graph = record_graph(app, "sentiment", monkeypatch, delay_s=0.01)

    post_all(app, "/v1/sentiment", [{"texts": ["good"]}] * 12, threads=12)

    assert graph.rows == [1] * 12


def test_a_full_queue_is_a_503_with_retry_after(app_factory, tiny_model_dir, monkeypatch):
    app = app_factory(tiny_model_dir, batch_max_queue_size=1)
    graph = record_graph(app, "sentiment", monkeypatch)
    graph.gate.clear()
    batcher = app.extensions[REGISTRY_KEY].models["sentiment"].predictor.scheduler
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(app.test_client().post, "/v1/sentiment", json={"texts": ["good"]})
        assert graph.entered.wait(5)  # in the graph; the next one waits in the queue
        queued = pool.submit(app.test_client().post, "/v1/sentiment", json={"texts": ["bad"]})
        deadline = time.monotonic() + 5
        while not batcher._waiting and time.monotonic() < deadline:
            time.sleep(0.01)

        refused = app.test_client().post("/v1/sentiment", json={"texts": ["awful"]})
        graph.gate.set()
        assert running.result(5).status_code == 200
        assert queued.result(5).status_code == 200

    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    error = refused.get_json()["error"]
    assert error["code"] == "overloaded"
    assert "retry later" in error["message"]


def test_a_request_waiting_past_request_timeout_is_a_504(app_factory, tiny_model_dir, monkeypatch):
    app = app_factory(tiny_model_dir, request_timeout_s=0.3)
    graph = record_graph(app, "sentiment", monkeypatch)
    graph.gate.clear()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(app.test_client().post, "/v1/sentiment", json={"texts": ["bad"]})
        assert graph.entered.wait(5)  # the graph is busy; the next request waits behind it

        started = time.monotonic()
        response = app.test_client().post("/v1/sentiment", json={"texts": ["good"]})
        waited = time.monotonic() - started
        graph.gate.set()
        running.result(5)

    assert response.status_code == 504
    assert response.get_json()["error"]["code"] == "timeout"
    assert "REQUEST_TIMEOUT_S=0.3" in response.get_json()["error"]["message"]
    assert 0.25 < waited < 3
    assert app.test_client().post("/v1/sentiment", json={"texts": ["good"]}).status_code == 200


def test_a_request_whose_client_left_while_it_waited_is_a_499_and_never_runs(
    app_factory, tiny_model_dir, monkeypatch, caplog
) -> None:
    """Under gunicorn the request's connection is in its environ; the client closes it."""
    monkeypatch.setattr(batcher_module, "CLIENT_CHECK_S", 0.1)
    app = app_factory(tiny_model_dir)
    graph = record_graph(app, "sentiment", monkeypatch)
    graph.gate.clear()
    server_end, client_end = socket.socketpair()
    with server_end, ThreadPoolExecutor(2) as pool:
        running = pool.submit(app.test_client().post, "/v1/sentiment", json={"texts": ["bad"]})
        assert graph.entered.wait(5)  # the graph is busy; the next request waits behind it
        leaving = pool.submit(
            app.test_client().post,
            "/v1/sentiment",
            json={"texts": ["good", "great"]},
            environ_overrides={GUNICORN_SOCKET: server_end},
        )
        time.sleep(0.3)  # it has checked its client, which was there
        assert not leaving.done()
        client_end.close()
        response = leaving.result(5)
        graph.gate.set()
        assert running.result(5).status_code == 200

    assert response.status_code == 499
    assert response.get_json()["error"]["code"] == "client_closed_request"
    assert graph.rows == [1]  # the request that stayed; the one that left never ran
    assert app.test_client().post("/v1/sentiment", json={"texts": ["good"]}).status_code == 200


def test_peer_alive_reads_a_closed_or_reset_connection_as_gone() -> None:
    left, right = socket.socketpair()
    with left:
        alive = peer_alive(left)
        assert alive()
        right.sendall(b"GET / HTTP/1.1\r\n")  # a pipelined request: still there
        assert alive()
        right.close()
        assert alive()  # the pipelined bytes are still unread
        left.recv(100)
        assert not alive()
    assert not alive()  # closed here
