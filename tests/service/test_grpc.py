"""The Open Inference Protocol over gRPC, served in-process over the tiny artifacts: the stock
``tritonclient.grpc`` client, and hand-built requests (``service.grpc_api.messages``) for what
that client never sends. Answers are checked against the same request over HTTP ``/v2``, and
errors against the messages that ``/v2`` gives (``test_api_v2.py``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from flask import Flask
from tritonclient.utils import InferenceServerException

from service import REGISTRY_KEY, SETTINGS_KEY
from service.grpc_api import messages
from service.grpc_api import server as server_module
from service.grpc_api import worker as worker_module
from service.grpc_api.server import start
from service.grpc_api.servicer import InferenceServicer
from service.grpc_api.worker import (
    MARKER_FOLDER,
    Handover,
    before_signal,
    forget_worker,
    mark_starting,
    marker_of,
    start_in_worker,
    starting_siblings,
    stop_in_worker,
)
from service.log import RequestIdFilter
from service.metrics import render_metrics
from service.runtime import batcher as batcher_module
from service.runtime.batcher import DeadlineExceeded, QueueFull
from tests.service.live_server import free_port
from tests.service.metrics_text import sample_values, value

SENTIMENT_TEXTS = ["a great movie", "an awful movie", "Zürich 東京 🙂 good"]
NER_TEXTS = ["EU rejects German call to boycott British lamb.", "Zoë Ångström visited Zürich."]
KEY = "k" * 16
# How a stopping server refuses a call: no listener any more, or a call it cancels at once.
REFUSED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
ADMIN_KEY = "a" * 16


@contextmanager
def grpc_serving(app: Flask) -> Iterator[str]:
    """Serve ``app``'s models over gRPC on a free port; yield ``host:port``."""
    server, port = start(app, 0)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


@contextmanager
def triton_client(app: Flask) -> Iterator[triton.InferenceServerClient]:
    with grpc_serving(app) as address:
        client = triton.InferenceServerClient(address)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(scope="module")
def ner_grpc(ner_app: Flask) -> Iterator[triton.InferenceServerClient]:
    """Sentiment and NER over gRPC."""
    with triton_client(ner_app) as client:
        yield client


@pytest.fixture(scope="module")
def ner_address(ner_app: Flask) -> Iterator[str]:
    with grpc_serving(ner_app) as address:
        yield address


def text_input(texts: list[str]) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
    return tensor


def http_outputs(app: Flask, model: str, texts: list[str], **parameters: Any) -> dict[str, Any]:
    """The same request over HTTP ``/v2``: output name -> data as a numpy array."""
    body: dict[str, Any] = {
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]
    }
    if parameters:
        body["parameters"] = parameters
    response = app.test_client().post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.get_json()
    return {
        o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.get_json()["outputs"]
    }


def call(
    address: str, method: str, request: Any, metadata: tuple = (), timeout: float = 30
) -> tuple[Any, Any]:
    """Make one call with the service's own message classes: (response, call)."""
    request_class, response_class = messages.METHODS[method]
    with grpc.insecure_channel(address) as channel:
        stub = channel.unary_unary(
            f"/{messages.SERVICE}/{method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return stub.with_call(request, metadata=metadata, timeout=timeout)


def infer_request(texts: list[bytes] | None = None, **fields: Any) -> Any:
    """A sentiment ModelInferRequest with ``texts`` in ``contents.bytes_contents``."""
    request = messages.ModelInferRequest(model_name="sentiment", **fields)
    if texts is not None:
        tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
        tensor.contents.bytes_contents.extend(texts)
    return request


def rpc_error(address: str, request: Any, method: str = "ModelInfer", **kwargs: Any) -> Any:
    with pytest.raises(grpc.RpcError) as caught:
        call(address, method, request, **kwargs)
    return caught.value


# --- health and metadata ----------------------------------------------------------------------


def test_health_and_server_metadata(ner_grpc) -> None:
    assert ner_grpc.is_server_live()
    assert ner_grpc.is_server_ready()
    assert ner_grpc.is_model_ready("sentiment")
    assert ner_grpc.is_model_ready("ner")
    metadata = ner_grpc.get_server_metadata()
    assert metadata.name == "rnn-inference-service"
    assert metadata.version
    # binary_tensor_data is an HTTP extension
    assert list(metadata.extensions) == ["model_configuration", "statistics"]


@pytest.mark.parametrize("model", ["sentiment", "ner"])
def test_model_metadata_is_the_http_metadata(ner_app: Flask, ner_grpc, model: str) -> None:
    over_http = ner_app.test_client().get(f"/v2/models/{model}").get_json()

    metadata = ner_grpc.get_model_metadata(model)

    assert metadata.name == over_http["name"]
    assert list(metadata.versions) == over_http["versions"]
    assert metadata.platform == over_http["platform"]
    for ours, theirs in (
        (metadata.inputs, over_http["inputs"]),
        (metadata.outputs, over_http["outputs"]),
    ):
        assert [(t.name, t.datatype, list(t.shape)) for t in ours] == [
            (t["name"], t["datatype"], t["shape"]) for t in theirs
        ]


@pytest.mark.parametrize("model", ["sentiment", "ner"])
def test_model_config_is_the_http_config(ner_app: Flask, ner_grpc, model: str) -> None:
    over_http = ner_app.test_client().get(f"/v2/models/{model}/config").get_json()

    config = ner_grpc.get_model_config(model, as_json=True)["config"]

    def whole(tensors: list[dict]) -> list[dict]:  # int64 dims are strings in protobuf's JSON
        return [t | {"dims": [int(d) for d in t["dims"]]} for t in tensors]

    assert config.get("max_batch_size", 0) == over_http["max_batch_size"]  # 0 is not sent
    assert whole(config["input"]) == over_http["input"]
    assert whole(config["output"]) == over_http["output"]
    for field in ("name", "platform", "backend", "parameters"):
        assert config[field] == over_http[field]


def test_a_version_that_is_not_served_is_not_found(ner_grpc) -> None:
    for ask in (
        lambda: ner_grpc.get_model_metadata("sentiment", model_version="9"),
        lambda: ner_grpc.infer("sentiment", [text_input(["good"])], model_version="9"),
    ):
        with pytest.raises(InferenceServerException, match="has no version '9'") as caught:
            ask()
        assert caught.value.status() == "StatusCode.NOT_FOUND"


def test_an_unknown_model_is_not_found(ner_grpc) -> None:
    with pytest.raises(InferenceServerException, match="unknown model 'nope'") as caught:
        ner_grpc.infer("nope", [text_input(["good"])])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    # As Triton answers ModelReady, and as tritonclient's HTTP client reads a 404.
    assert ner_grpc.is_model_ready("nope") is False
    assert ner_grpc.is_model_ready("ner", "9") is False


@pytest.mark.parametrize("letter", ["x", "\u00e9", "\U0001f600"])
def test_an_error_echoing_a_long_name_keeps_its_status(ner_address: str, letter: str) -> None:
    """The message names the model asked for; cut, it still fits the client's trailer limit,
    so the client sees NOT_FOUND, as the server counts it, not RESOURCE_EXHAUSTED."""
    name = letter * (12_000 // len(letter.encode()))  # 12 KB: within the test MAX_BODY_BYTES
    request = messages.METHODS["ModelMetadata"][0](name=name)

    error = rpc_error(ner_address, request, method="ModelMetadata")

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details().startswith(f"unknown model '{letter * 10}")
    assert error.details().endswith("...")


def test_a_model_that_failed_to_load_is_not_ready(app_factory, own_model_dir: Path) -> None:
    (own_model_dir / "broken").mkdir()
    (own_model_dir / "broken" / "manifest.json").write_text("{}", "utf-8")

    with triton_client(app_factory(own_model_dir)) as client:
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert not client.is_model_ready("broken")
        assert client.is_model_ready("sentiment")
        with pytest.raises(InferenceServerException, match="'broken' failed to load") as caught:
            client.infer("broken", [text_input(["good"])])
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        assert client.infer("sentiment", [text_input(["good"])]).as_numpy("label").shape == (1,)


# --- inference --------------------------------------------------------------------------------


def test_sentiment_answers_as_over_http(ner_app: Flask, ner_grpc) -> None:
    result = ner_grpc.infer("sentiment", [text_input(SENTIMENT_TEXTS)], request_id="req-7")
    expected = http_outputs(ner_app, "sentiment", SENTIMENT_TEXTS)

    assert [v.decode() for v in result.as_numpy("label")] == list(expected["label"])
    np.testing.assert_array_equal(result.as_numpy("score"), expected["score"].astype(np.float32))
    np.testing.assert_array_equal(
        result.as_numpy("probabilities"), expected["probabilities"].astype(np.float32)
    )
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (
        "sentiment",
        "0.0.1-test",
        "req-7",
    )


def test_ner_answers_as_over_http(ner_app: Flask, ner_grpc) -> None:
    result = ner_grpc.infer("ner", [text_input(NER_TEXTS)])
    expected = http_outputs(ner_app, "ner", NER_TEXTS)

    entities = [json.loads(v.decode()) for v in result.as_numpy("entities")]
    assert entities == [json.loads(v) for v in expected["entities"]]


def test_translation_reads_its_parameters(translation_app: Flask) -> None:
    texts = ["a man rides a horse .", "two dogs"]
    with triton_client(translation_app) as client:
        result = client.infer("translation", [text_input(texts)], parameters={"beam_size": 1})
        expected = http_outputs(translation_app, "translation", texts, beam_size=1)
        assert [v.decode() for v in result.as_numpy("translation")] == list(expected["translation"])

        with pytest.raises(InferenceServerException, match=r"parameters\.beam_size") as caught:
            client.infer("translation", [text_input(texts)], parameters={"beam_size": 11})
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_only_the_outputs_asked_for_in_that_order_as_over_http(ner_app: Flask, ner_grpc) -> None:
    wanted = [triton.InferRequestedOutput("probabilities"), triton.InferRequestedOutput("label")]
    body = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["good"]}],
        "outputs": [{"name": "probabilities"}, {"name": "label"}],
    }
    over_http = ner_app.test_client().post("/v2/models/sentiment/infer", json=body).get_json()

    result = ner_grpc.infer("sentiment", [text_input(["good"])], outputs=wanted)

    names = [o.name for o in result.get_response().outputs]
    assert names == [o["name"] for o in over_http["outputs"]] == ["probabilities", "label"]
    assert result.as_numpy("probabilities").shape == (1, 2)


def test_texts_in_contents_answer_as_raw_texts(ner_address: str, ner_grpc) -> None:
    texts = SENTIMENT_TEXTS
    raw = ner_grpc.infer("sentiment", [text_input(texts)])

    response, _ = call(ner_address, "ModelInfer", infer_request([t.encode() for t in texts]))

    assert [o.name for o in response.outputs] == ["label", "score", "probabilities"]
    probabilities = np.frombuffer(response.raw_output_contents[2], dtype="<f4").reshape(3, 2)
    np.testing.assert_array_equal(probabilities, raw.as_numpy("probabilities"))


# --- errors: the status and message the same request gets over HTTP -------------------------


def _two_inputs() -> Any:
    request = infer_request([b"good"])
    request.inputs.add(name="other", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"x"
    )
    return request


def _raw_and_contents() -> Any:
    request = infer_request([b"good"])
    request.raw_input_contents.append(b"\x04\x00\x00\x00good")
    return request


def _raw(payload: bytes, count: int = 1, shape: int = 1) -> Any:
    request = infer_request()
    request.inputs.add(name="text", datatype="BYTES", shape=[shape])
    request.raw_input_contents.extend([payload] * count)
    return request


def _with_output(name: str, duplicate: bool = False, classification: bool = False) -> Any:
    request = infer_request([b"good"])
    for _ in range(2 if duplicate else 1):
        output = request.outputs.add(name=name)
        if classification:
            output.parameters["classification"].int64_param = 2
    return request


def _retyped(**changes: Any) -> Any:
    request = infer_request([b"good"])
    tensor = request.inputs[0]
    for field, change in changes.items():
        if field == "shape":
            del tensor.shape[:]
            tensor.shape.extend(change)
        else:
            setattr(tensor, field, change)
    return request


def _in_fp32_contents() -> Any:
    request = messages.ModelInferRequest(model_name="sentiment")
    request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.fp32_contents.append(1)
    return request


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (infer_request(), "expected exactly one input, 'text'; got []"),
        (_two_inputs(), "expected exactly one input, 'text'; got ['text', 'other']"),
        (_retyped(name="texts"), "expected exactly one input, 'text'; got ['texts']"),
        (_retyped(datatype="FP32"), "input 'text' must be BYTES, got FP32"),
        (_retyped(shape=[1, 1]), "input 'text' must have shape [N], got [1, 1]"),
        (_retyped(shape=[2]), "input 'text' has shape [2] but 1 elements"),
        (infer_request([b""]), "text[0]: text is empty"),
        (infer_request([b"good"] * 101), "at most 100 texts"),
        (infer_request([b"\xff"]), "input 'text' is not valid UTF-8"),
        (_raw_and_contents(), "input 'text' has both contents and raw_input_contents"),
        (_in_fp32_contents(), "strings go in contents.bytes_contents or raw_input_contents, not"),
        (_raw(b"\x04\x00\x00\x00good", count=2), "raw_input_contents has 2 entries for 1 input"),
        (_raw(b"\x09\x00\x00\x00good"), "a BYTES element of 9 bytes runs past the end"),
        (_with_output("logits"), "unknown output 'logits'; this model has ['label', "),
        (_with_output("label", duplicate=True), "outputs[1]: output 'label' is requested twice"),
        (_with_output("label", classification=True), "the classification extension is not"),
    ],
)
def test_a_bad_request_is_invalid_argument(ner_address: str, request_: Any, message: str) -> None:
    error = rpc_error(ner_address, request_)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()


def test_a_malformed_message_is_invalid_argument_and_counted(ner_address: str) -> None:
    labels = {"method": "ModelInfer", "model": "", "code": "INVALID_ARGUMENT"}
    before = value(
        sample_values(render_metrics().get_data(as_text=True)), "grpc_requests_total", **labels
    )
    with grpc.insecure_channel(ner_address) as channel:
        send_bytes = channel.unary_unary(f"/{messages.SERVICE}/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            send_bytes(b"\x0a\x01\xff", timeout=30)  # model_name: one byte, not UTF-8

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ModelInferRequest message" in caught.value.details()
    after = value(
        sample_values(render_metrics().get_data(as_text=True)), "grpc_requests_total", **labels
    )
    assert after - before == 1


@contextmanager
def one_call_held(app: Flask, monkeypatch) -> Iterator[str]:
    """Serve ``app`` over gRPC while one ModelInfer call is held inside its model; yield the
    address."""
    entered, release = _hold_predictions(app, monkeypatch)
    with grpc_serving(app) as address:
        held = threading.Thread(target=call, args=(address, "ModelInfer", infer_request([b"good"])))
        held.start()
        try:
            assert entered.wait(30)
            yield address
        finally:
            release.set()
            held.join(30)


def test_calls_past_grpc_max_concurrent_calls_are_refused(
    app_factory, own_model_dir, monkeypatch
) -> None:
    app = app_factory(own_model_dir, grpc_threads=1, grpc_max_concurrent_calls=1)
    with one_call_held(app, monkeypatch) as address:
        error = rpc_error(address, messages.ServerLiveRequest(), method="ServerLive")

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_calls_whose_message_never_arrives_take_no_turn(app_factory, own_model_dir) -> None:
    """A client can open calls and not send their messages (a stream that waits, a slow or
    hostile client): they wait in threads of their own, the only turn (GRPC_THREADS=1) goes to
    other calls meanwhile, and they are answered once their messages come."""
    app = app_factory(own_model_dir, grpc_threads=1)
    send = threading.Event()
    request = infer_request([b"good"]).SerializeToString()

    def late() -> Iterator[bytes]:
        send.wait(30)
        yield request

    with grpc_serving(app) as address, grpc.insecure_channel(address) as channel:
        stalled_stub = channel.stream_unary(f"/{messages.SERVICE}/ModelInfer")
        stalled = [stalled_stub.future(late(), timeout=60) for _ in range(3)]
        try:
            answer, _ = call(address, "ModelInfer", infer_request([b"an awful movie"]))
        finally:
            send.set()
        late_answers = [messages.ModelInferResponse.FromString(s.result()) for s in stalled]

    assert len(answer.raw_output_contents) == 3
    assert all(len(a.raw_output_contents) == 3 for a in late_answers)


def test_probes_are_answered_while_every_turn_is_taken(
    app_factory, own_model_dir, monkeypatch
) -> None:
    app = app_factory(own_model_dir, grpc_threads=1)
    with one_call_held(app, monkeypatch) as address:
        health = health_check(address, b"")
        ready, _ = call(address, "ServerReady", messages.METHODS["ServerReady"][0]())

    assert health == SERVING and ready.ready


def _sentiment_rows() -> float:
    samples = sample_values(render_metrics().get_data(as_text=True))
    return value(samples, "inference_rows_total", model="sentiment")


def test_grpc_threads_bounds_the_inference_calls_that_run_at_once(
    app_factory, own_model_dir, monkeypatch
) -> None:
    app = app_factory(own_model_dir, grpc_threads=1)
    predictor = app.extensions[REGISTRY_KEY].models["sentiment"].predictor
    running, most, lock, release = [0], [0], threading.Lock(), threading.Event()
    predict = predictor.predict_batch

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            assert release.wait(30)
            return predict(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(predictor, "predict_batch", counted)
    with grpc_serving(app) as address:
        calls = [
            threading.Thread(target=call, args=(address, "ModelInfer", infer_request([b"good"])))
            for _ in range(3)
        ]
        for thread in calls:
            thread.start()
        time.sleep(0.5)  # time for all three to arrive
        waiting = most[0]
        release.set()
        for thread in calls:
            thread.join(30)

    assert waiting == 1 and most[0] == 1


class _GoneContext:
    """The context of a call whose client has left: before its answer began (``early``), or
    while it waited for its turn to run."""

    def __init__(self, early: bool) -> None:
        self.early = early
        self.code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple:
        return ()

    def send_initial_metadata(self, metadata: tuple) -> None:
        if self.early:
            raise grpc.RpcError()

    def is_active(self) -> bool:
        return False

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code


def test_a_call_whose_client_left_while_it_waited_for_its_model_is_cancelled(
    app_factory, own_model_dir, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(batcher_module, "CLIENT_CHECK_S", 0.1)
    app = app_factory(own_model_dir)
    session = app.extensions[REGISTRY_KEY].models["sentiment"].predictor.session
    entered, release, run = threading.Event(), threading.Event(), session.run
    batches: list[int] = []

    def held(feeds: Any) -> Any:
        entered.set()
        assert release.wait(30)
        batches.append(len(feeds["lengths"]))
        return run(feeds)

    monkeypatch.setattr(session, "run", held)
    with caplog.at_level(logging.INFO, logger="service.requests"), grpc_serving(app) as address:
        first = threading.Thread(target=call, args=(address, "ModelInfer", infer_request([b"a"])))
        first.start()
        try:
            assert entered.wait(30)
            gone = rpc_error(address, infer_request([b"b", b"c"]), timeout=0.5)  # queued behind
            deadline = time.monotonic() + 10  # until the server has seen that it left
            while not any(r.name == "service.requests" for r in caplog.records):
                assert time.monotonic() < deadline, "the call that was left is not logged"
                time.sleep(0.01)
        finally:
            release.set()
            first.join(30)

    assert gone.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    codes = [r.grpc_code for r in caplog.records if r.name == "service.requests"]
    assert codes == ["CANCELLED", "OK"]
    assert batches == [1]  # the call that left never ran


@pytest.mark.parametrize("early", [True, False], ids=["before-its-answer", "while-it-waited"])
def test_a_call_whose_client_left_is_logged_cancelled_and_not_run(
    app: Flask, early: bool, caplog
) -> None:
    servicer = InferenceServicer(app.extensions[REGISTRY_KEY], app.extensions[SETTINGS_KEY])
    context = _GoneContext(early)
    handle = servicer.handler().service(SimpleNamespace(method=f"/{messages.SERVICE}/ModelInfer"))
    rows_before = _sentiment_rows()
    with caplog.at_level(logging.INFO, logger="service.requests"):
        answer = handle.unary_unary(infer_request([b"good"]).SerializeToString(), context)

    assert answer == messages.ModelInferResponse()
    (line,) = [r for r in caplog.records if r.name == "service.requests"]
    assert line.grpc_code == "CANCELLED" and context.code is None
    assert _sentiment_rows() == rows_before


def test_a_message_over_max_body_bytes_is_refused(ner_address: str) -> None:
    error = rpc_error(ner_address, infer_request([b"x" * 400] * 50))  # 20 KB > 16 KiB

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("failure", "code", "message", "trailer"),
    [
        (QueueFull("sentiment", 64, 3), "UNAVAILABLE", "64 requests are already waiting", "3"),
        (DeadlineExceeded("sentiment", 30), "DEADLINE_EXCEEDED", "REQUEST_TIMEOUT_S=30", None),
        (RuntimeError("secret detail"), "INTERNAL", "internal server error", None),
    ],
)
def test_batcher_failures_and_bugs_have_their_status(
    app: Flask, monkeypatch, failure: Exception, code: str, message: str, trailer: str | None
) -> None:
    predictor = app.extensions["service.registry"].models["sentiment"].predictor

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(predictor, "predict_batch", fail)
    with grpc_serving(app) as address:
        error = rpc_error(address, infer_request([b"good"]))

    assert error.code().name == code
    assert message in error.details()
    assert "secret" not in error.details()
    assert dict(error.trailing_metadata()).get("retry-after") == trailer


# --- keys, request ids, logs and metrics ------------------------------------------------------


def test_api_keys_are_checked_but_not_on_the_health_calls(app_factory, tiny_model_dir) -> None:
    app = app_factory(tiny_model_dir, api_keys=(KEY,), admin_api_keys=(ADMIN_KEY,))
    with triton_client(app) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        for headers, reason in (
            (None, "missing"),
            ({"authorization": "Bearer " + "x" * 16}, "invalid"),
        ):
            with pytest.raises(InferenceServerException, match=f"{reason} API key") as caught:
                client.infer("sentiment", [text_input(["good"])], headers=headers)
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
            with pytest.raises(InferenceServerException, match=f"{reason} API key"):
                client.get_model_metadata("sentiment", headers=headers)
            # Which models are served is not for everyone either (the HTTP probes say ready
            # or not, for the whole server).
            with pytest.raises(InferenceServerException, match=f"{reason} API key"):
                client.is_model_ready("sentiment", headers=headers)
            with pytest.raises(InferenceServerException, match=f"{reason} API key"):
                client.get_model_repository_index(headers=headers)
        for key in (KEY, ADMIN_KEY):
            result = client.infer(
                "sentiment", [text_input(["good"])], headers={"authorization": f"Bearer {key}"}
            )
            assert result.as_numpy("label").shape == (1,)


def test_the_request_id_is_sent_back_and_logged(ner_address: str, caplog) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="service.requests"):
        _, sane = call(
            ner_address, "ModelInfer", infer_request([b"good"]), (("x-request-id", "abc-1"),)
        )
        _, insane = call(
            ner_address, "ServerLive", messages.ServerLiveRequest(), (("x-request-id", "a b"),)
        )

    assert dict(sane.initial_metadata())["x-request-id"] == "abc-1"
    generated = dict(insane.initial_metadata())["x-request-id"]
    assert len(generated) == 32 and generated != "a b"
    lines = [r for r in caplog.records if r.name == "service.requests"]
    infer_line = next(r for r in lines if r.request_id == "abc-1")
    assert infer_line.path == "/inference.GRPCInferenceService/ModelInfer"
    assert (infer_line.method, infer_line.grpc_code, infer_line.model) == (
        "gRPC",
        "OK",
        "sentiment",
    )
    assert not hasattr(infer_line, "status")  # an HTTP status, a number, on HTTP lines
    assert any(r.request_id == generated and r.grpc_code == "OK" for r in lines)


def test_a_traceparent_tags_the_call_s_log_line_with_its_trace(ner_address: str, caplog) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="service.requests"):
        for request_id, traceparent in (
            ("traced", f"00-{trace_id}-{parent_id}-01"),
            ("invalid", f"00-{'0' * 32}-{parent_id}-01"),
        ):
            metadata = (("x-request-id", request_id), ("traceparent", traceparent))
            call(ner_address, "ModelInfer", infer_request([b"good"]), metadata)
        call(ner_address, "ServerLive", messages.ServerLiveRequest(), (("x-request-id", "none"),))

    lines = {r.request_id: r for r in caplog.records if r.name == "service.requests"}
    assert (lines["traced"].trace_id, lines["traced"].parent_id) == (trace_id, parent_id)
    assert not hasattr(lines["invalid"], "trace_id") and not hasattr(lines["none"], "trace_id")


def test_statistics_are_those_of_http_and_count_grpc_calls(ner_app, ner_grpc) -> None:
    http = ner_app.test_client()
    before = ner_grpc.get_inference_statistics("sentiment", as_json=True)["model_stats"][0]

    ner_grpc.infer("sentiment", [text_input(["good", "bad"])])

    answer = ner_grpc.get_inference_statistics("sentiment", as_json=True)["model_stats"][0]
    over_http = http.get("/v2/models/sentiment/stats").get_json()["model_stats"][0]
    # As JSON, protobuf writes uint64 as strings and leaves zeros out.
    assert int(answer["inference_count"]) == over_http["inference_count"]
    success = answer["inference_stats"]["success"]
    assert int(success["count"]) == over_http["inference_stats"]["success"]["count"]
    assert int(success["count"]) - int(before["inference_stats"]["success"]["count"]) == 1
    assert int(answer["inference_count"]) - int(before["inference_count"]) == 2
    every = ner_grpc.get_inference_statistics(as_json=True)["model_stats"]
    assert [m["name"] for m in every] == ["ner", "sentiment"]
    with pytest.raises(InferenceServerException, match="unknown model"):
        ner_grpc.get_inference_statistics("nope")


def test_calls_are_counted_by_method_model_and_code(ner_address: str) -> None:
    labels = {"method": "ModelInfer", "model": "sentiment"}
    before = sample_values(render_metrics().get_data(as_text=True))

    call(ner_address, "ModelInfer", infer_request([b"good"]))
    rpc_error(ner_address, infer_request([b""]))

    after = sample_values(render_metrics().get_data(as_text=True))
    for code in ("OK", "INVALID_ARGUMENT"):
        counted = value(after, "grpc_requests_total", code=code, **labels)
        assert counted - value(before, "grpc_requests_total", code=code, **labels) == 1
        timed = value(after, "grpc_request_duration_seconds_count", code=code, **labels)
        assert (
            timed - value(before, "grpc_request_duration_seconds_count", code=code, **labels) == 1
        )
    rows = value(after, "inference_rows_total", model="sentiment")
    assert rows - value(before, "inference_rows_total", model="sentiment") == 1


# --- stopping ---------------------------------------------------------------------------------


def _hold_predictions(app: Flask, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make sentiment predictions of ``app`` wait: (entered, release)."""
    predictor = app.extensions["service.registry"].models["sentiment"].predictor
    entered, release = threading.Event(), threading.Event()
    predict = predictor.predict_batch

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return predict(*args, **kwargs)

    monkeypatch.setattr(predictor, "predict_batch", held)
    return entered, release


def test_stopping_finishes_calls_in_flight_and_refuses_new_ones(
    app_factory, own_model_dir: Path, monkeypatch
) -> None:
    app = app_factory(own_model_dir)
    entered, release = _hold_predictions(app, monkeypatch)
    server, port = start(app, 0)
    address = f"127.0.0.1:{port}"
    handover = Handover(server, graceful_s=30, folder=None, master=os.getppid())
    worker = SimpleNamespace(grpc_handover=handover)
    answers: list[Any] = []
    in_flight = threading.Thread(
        target=lambda: answers.append(call(address, "ModelInfer", infer_request([b"good"]))[0])
    )
    in_flight.start()
    assert entered.wait(30)

    stopping = threading.Thread(target=stop_in_worker, args=(worker,))
    stopping.start()
    refused = None
    for _ in range(100):  # until the server has stopped taking calls
        try:
            call(address, "ServerLive", messages.ServerLiveRequest())
        except grpc.RpcError as error:
            refused = error
            break
        time.sleep(0.05)
    still_stopping = stopping.is_alive()  # waiting for the call in flight
    release.set()
    stopping.join(30)
    in_flight.join(30)

    assert refused is not None and refused.code() in REFUSED
    assert still_stopping and not stopping.is_alive()
    assert len(answers) == 1 and len(answers[0].raw_output_contents) == 3


def _server_threads_since(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads of a server started since ``before``: its loop's, its pool's (grpc's own poller,
    started once per process, is not one)."""
    return [t for t in set(threading.enumerate()) - before if t.name.startswith("grpc")]


def test_a_port_that_cannot_be_bound_is_an_error_that_leaves_no_thread(app: Flask) -> None:
    before = set(threading.enumerate())
    with socket.socket() as taken:  # no SO_REUSEPORT: nothing else may bind the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match=r"gRPC cannot listen on 127\.0\.0\.1:"):
            start(app, taken.getsockname()[1], host="127.0.0.1")

    assert _server_threads_since(before) == []


def test_connections_are_closed_after_their_maximum_age(app: Flask, monkeypatch) -> None:
    """So that a long-lived client reconnects, and lands on any worker (the kernel's choice)."""
    monkeypatch.setattr(server_module, "MAX_CONNECTION_AGE_S", 1)
    states: list[grpc.ChannelConnectivity] = []
    with grpc_serving(app) as address, grpc.insecure_channel(address) as channel:
        channel.subscribe(states.append)
        live = channel.unary_unary(
            f"/{messages.SERVICE}/ServerLive",
            request_serializer=messages.ServerLiveRequest.SerializeToString,
            response_deserializer=messages.ServerLiveResponse.FromString,
        )
        assert live(messages.ServerLiveRequest(), timeout=30).live
        deadline = time.monotonic() + 20
        # The channel reports its states from a thread of its own, READY included, later.
        while not (READY in states and IDLE in states[states.index(READY) :]):
            assert time.monotonic() < deadline, states
            time.sleep(0.1)
        assert live(messages.ServerLiveRequest(), timeout=30).live  # on a new connection


READY, IDLE = grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.IDLE


def test_no_grpc_server_without_grpc_port(app: Flask) -> None:
    worker = SimpleNamespace(wsgi=app)

    start_in_worker(worker)

    assert not hasattr(worker, "grpc_handover")
    stop_in_worker(worker)  # nothing to stop


def test_a_stopping_worker_waits_for_newer_starting_siblings_only(
    tmp_path: Path, monkeypatch
) -> None:
    """Siblings: children of one parent (here, this process), like a master's workers."""
    monkeypatch.setattr(worker_module, "FORK_GRACE_S", 0.0)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    older = subprocess.Popen(sleep)
    time.sleep(0.05)  # start times count in clock ticks (10 ms)
    younger, other = subprocess.Popen(sleep), subprocess.Popen(sleep)  # other: not a worker
    try:
        marker_of("starting", younger.pid, tmp_path).touch()  # post_fork
        marker_of("starting", older.pid, tmp_path).touch()  # e.g. restarted, still loading
        assert starting_siblings(tmp_path, me=older.pid) == [younger.pid]
        assert starting_siblings(tmp_path, me=younger.pid) == []  # the older one is not newer
        marker_of("starting", older.pid, tmp_path).unlink()
        marker_of("serving", younger.pid, tmp_path).touch()  # gRPC listens
        assert starting_siblings(tmp_path, me=older.pid) == []
        # A child just forked may be a worker that has not written its file yet.
        monkeypatch.setattr(worker_module, "FORK_GRACE_S", 60.0)
        assert starting_siblings(tmp_path, me=older.pid) == [other.pid]
        monkeypatch.setattr(worker_module, "FORK_GRACE_S", 0.0)
        marker_of("serving", younger.pid, tmp_path).unlink()
        younger.kill()
        younger.wait()
        assert starting_siblings(tmp_path, me=older.pid) == []  # gone: nothing to wait for
    finally:
        for process in (older, younger, other):
            process.kill()
            process.wait()


def test_now_is_counted_in_whole_ticks_like_process_start_times(tmp_path: Path, monkeypatch):
    uptime = tmp_path / "uptime"
    uptime.write_text("81145.01 160000.00\n")  # 81145.01 * 100 is 8114500.999... as floats
    monkeypatch.setattr(worker_module, "_UPTIME", str(uptime))
    monkeypatch.setattr(worker_module, "_TICKS_PER_S", 100)

    assert worker_module._uptime_ticks() == 8114501  # not before a process started this tick


def test_handover_files_go_in_a_folder_made_if_missing_and_leave_with_the_worker(
    tmp_path: Path,
) -> None:
    signals = tmp_path / "not-yet" / "reload"
    environ = {"RELOAD_SIGNAL_DIR": str(signals), "GRPC_PORT": "8001"}

    mark_starting(environ)

    (marker,) = (signals / MARKER_FOLDER).iterdir()
    assert marker.name.startswith(f"starting-{os.getpid()}-")
    assert [p for p in signals.iterdir() if p.is_file()] == []  # never read as reload signals
    forget_worker(os.getpid(), environ)
    assert list((signals / MARKER_FOLDER).iterdir()) == []
    other = tmp_path / "other"
    mark_starting({"RELOAD_SIGNAL_DIR": str(other), "GRPC_PORT": ""})  # gRPC off: nothing
    assert not other.exists()


def test_a_worker_told_to_stop_while_loading_serves_no_grpc(app_factory, tiny_model_dir) -> None:
    app = app_factory(tiny_model_dir, grpc_port=free_port())
    worker = SimpleNamespace(wsgi=app, alive=False)  # SIGTERM came during load_wsgi

    start_in_worker(worker)

    assert not hasattr(worker, "grpc_handover")


def health_check(address: str, request: bytes, metadata=()) -> bytes:
    """``grpc.health.v1.Health/Check`` with the request as bytes, as a Kubernetes gRPC probe
    sends it: the answer's bytes, read without this server's own message classes."""
    with grpc.insecure_channel(address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        return check(request, timeout=10, metadata=metadata)


SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"  # HealthCheckResponse{status: 1 or 2}


def test_the_grpc_health_protocol_says_serving_when_every_model_is_loaded(
    ner_address: str,
) -> None:
    assert health_check(ner_address, b"") == SERVING  # service "": the whole server
    service = b"inference.GRPCInferenceService"
    assert health_check(ner_address, b"\x0a" + bytes([len(service)]) + service) == SERVING
    with pytest.raises(grpc.RpcError) as error:
        health_check(ner_address, b"\x0a\x03foo")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no service 'foo' here" in error.value.details()


def test_the_grpc_health_protocol_says_not_serving_when_a_model_failed(
    app_factory, tiny_model_dir
) -> None:
    app = app_factory(tiny_model_dir, models=("sentiment", "nosuch"))
    with grpc_serving(app) as address:
        assert health_check(address, b"") == NOT_SERVING


def test_the_grpc_health_protocol_needs_no_key(app_factory, tiny_model_dir) -> None:
    app = app_factory(tiny_model_dir, api_keys=(KEY,))
    with grpc_serving(app) as address:
        assert health_check(address, b"") == SERVING


def test_the_repository_index_over_grpc_is_the_http_one(app_factory, tiny_model_dir) -> None:
    app = app_factory(tiny_model_dir, models=("sentiment", "nosuch"))
    http = app.test_client().post("/v2/repository/index").get_json()
    request_class, _ = messages.METHODS["RepositoryIndex"]
    with grpc_serving(app) as address:
        client = triton.InferenceServerClient(address)
        try:
            index = client.get_model_repository_index(as_json=True)["models"]
        finally:
            client.close()
        ready, _ = call(address, "RepositoryIndex", request_class(ready=True))
        with pytest.raises(grpc.RpcError) as error:
            call(address, "RepositoryIndex", request_class(repository_name="other"))

    assert index == http  # the same entries, fields and order
    assert [m["state"] for m in index] == ["UNAVAILABLE", "READY"]
    assert [m.name for m in ready.models] == ["sentiment"]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no repository 'other'" in error.value.details()


def test_a_signal_that_comes_while_its_action_runs_does_not_run_the_action_again() -> None:
    """A worker gets SIGTERM twice when the whole process group is signalled (systemd): the
    second handler ran ``Event.set`` inside the first one's, waited for the lock the first held,
    and the worker hung until its graceful timeout."""
    lock = threading.Lock()  # held while the action runs, as Event.set holds its Condition's
    actions: list[int] = []
    handled: list[int] = []
    installed = signal.signal(signal.SIGUSR1, lambda sig, frame: handled.append(sig))

    def action() -> None:
        assert lock.acquire(timeout=2), "run again inside itself: it would wait for itself"
        try:
            actions.append(len(handled))
            os.kill(os.getpid(), signal.SIGUSR1)  # the second signal, while the first runs
            for _ in range(10_000):  # Python runs the pending handler between bytecodes
                pass
        finally:
            lock.release()

    try:
        before_signal(signal.SIGUSR1, action)
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(10_000):
            pass
        os.kill(os.getpid(), signal.SIGUSR1)  # a later signal runs the action again
        for _ in range(10_000):
            pass
    finally:
        signal.signal(signal.SIGUSR1, installed)

    assert actions == [0, 2]
    assert handled == [signal.SIGUSR1] * 4  # the previous handler saw every signal
