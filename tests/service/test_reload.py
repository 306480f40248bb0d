"""POST /v1/models/{name}/reload: verified load, atomic swap, failures keep the old model."""

from __future__ import annotations

import gc
import json
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask

from service import REGISTRY_KEY
from tests.service.polling import wait_until
from tests.service.tiny_artifact import build_tiny_artifact

RELOAD = "/v1/models/sentiment/reload"


def set_version(folder: Path, version: str) -> None:
    """Change the manifest's version (the manifest is not part of its own checksums)."""
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text("utf-8"))
    data["version"] = version
    manifest.write_text(json.dumps(data), "utf-8")


def served_version(app: Flask) -> str:
    response = app.test_client().post("/v1/sentiment", json={"texts": ["good"]})
    assert response.status_code == 200
    return response.get_json()["model"]["version"]


def test_a_reload_swaps_in_the_new_files(admin_app_factory, own_model_dir: Path) -> None:
    app = admin_app_factory(own_model_dir)
    set_version(own_model_dir / "sentiment", "2.0.0")

    response = app.test_client().post(RELOAD)

    assert response.status_code == 200
    body = response.get_json()
    assert body["previous_version"] == "0.0.1-test"
    assert body["model"]["version"] == "2.0.0"
    assert served_version(app) == "2.0.0"
    assert app.test_client().get("/v2/models/sentiment").get_json()["versions"] == ["2.0.0"]


def test_a_failed_reload_keeps_the_old_model_serving_and_says_why(
    admin_app_factory, own_model_dir: Path
) -> None:
    app = admin_app_factory(own_model_dir)
    vocab = own_model_dir / "sentiment" / "vocab.json"
    vocab.write_text(vocab.read_text("utf-8").replace("awful", "awfull"), "utf-8")

    response = app.test_client().post(RELOAD)

    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "reload_failed"
    assert "sha256 mismatch" in error["message"] and "keeps serving" in error["message"]
    assert served_version(app) == "0.0.1-test"
    assert app.test_client().get("/v2/health/ready").status_code == 200


def test_in_flight_requests_finish_on_the_old_model(admin_app_factory, own_model_dir, monkeypatch):
    app = admin_app_factory(own_model_dir)
    old = app.extensions[REGISTRY_KEY].models["sentiment"].predictor
    entered, release = threading.Event(), threading.Event()
    run = old.session.run

    def slow_run(feeds):
        entered.set()
        release.wait(10)
        return run(feeds)

    monkeypatch.setattr(old.session, "run", slow_run)
    set_version(own_model_dir / "sentiment", "2.0.0")
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(served_version, app)
        assert entered.wait(5)  # inside the old model's graph

        reloaded = app.test_client().post(RELOAD)  # does not wait for the in-flight request
        assert served_version(app) == "2.0.0"  # new requests get the new model at once
        release.set()
        assert in_flight.result(5) == "0.0.1-test"
    assert reloaded.status_code == 200


def test_a_model_that_failed_at_start_can_be_reloaded_once_fixed(
    admin_app_factory, tmp_path
) -> None:
    folder = build_tiny_artifact(tmp_path / "sentiment")
    graph = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(b"broken")
    app = admin_app_factory(tmp_path)
    assert app.test_client().get("/v2/health/ready").status_code == 503
    still_broken = app.test_client().post(RELOAD)
    assert still_broken.status_code == 409
    assert "failed, it stays unloaded:" in still_broken.get_json()["error"]["message"]

    (folder / "model.onnx").write_bytes(graph)
    response = app.test_client().post(RELOAD)

    assert response.status_code == 200
    assert response.get_json()["previous_version"] is None
    assert app.test_client().get("/v2/health/ready").status_code == 200


def test_reloading_an_unknown_model_is_a_404(admin_app_factory, tiny_model_dir) -> None:
    client = admin_app_factory(tiny_model_dir).test_client()
    for name in ("translation", ".."):
        response = client.post(f"/v1/models/{name}/reload")
        assert response.status_code == 404


@pytest.mark.parametrize("batching", [True, False])
def test_a_replaced_model_is_freed_as_soon_as_no_request_uses_it(
    admin_app_factory, own_model_dir: Path, batching: bool
) -> None:
    # Not left to the cyclic garbage collector: under gunicorn, replaced models (ONNX Runtime
    # sessions and their threads) piled up in every worker, reload after reload.
    app = admin_app_factory(own_model_dir, batching=batching)
    registry = app.extensions[REGISTRY_KEY]
    gc.disable()
    try:
        assert served_version(app) == "0.0.1-test"  # the model has run
        replaced = weakref.ref(registry.models["sentiment"].predictor)
        assert app.test_client().post(RELOAD).status_code == 200
        assert replaced() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("in_use", [False, True])
def test_memory_is_given_back_once_the_replaced_model_is_freed(
    admin_app_factory, own_model_dir: Path, monkeypatch, in_use: bool
) -> None:
    # glibc keeps a freed model's pages in its per-thread arenas unless asked to give them back;
    # a request still running on the old model when the reload returns holds it until it ends.
    app = admin_app_factory(own_model_dir)
    registry = app.extensions[REGISTRY_KEY]
    request_holds = registry.models["sentiment"].predictor if in_use else None
    replaced = weakref.ref(registry.models["sentiment"].predictor)
    freed_when_trimmed: list[bool] = []
    monkeypatch.setattr(
        "service.runtime.registry.give_memory_back",
        lambda: freed_when_trimmed.append(replaced() is None),
    )
    monkeypatch.setattr("service.runtime.registry.TRIM_DELAY_S", 0.01)

    assert app.test_client().post(RELOAD).status_code == 200
    if in_use:
        time.sleep(0.2)
        assert freed_when_trimmed == []  # nothing to give back yet
        del request_holds
    wait_until(lambda: freed_when_trimmed != [])
    assert freed_when_trimmed == [True]


def test_a_failing_metrics_observer_fails_no_reload(admin_app_factory, own_model_dir) -> None:
    class Failing:
        def on_serving(self, *args: object) -> None:
            raise OSError(28, "No space left on device")

        on_reload = on_serving

    app = admin_app_factory(own_model_dir)
    app.extensions[REGISTRY_KEY].observer = Failing()
    set_version(own_model_dir / "sentiment", "2.0.0")

    assert app.test_client().post(RELOAD).status_code == 200
    assert served_version(app) == "2.0.0"
