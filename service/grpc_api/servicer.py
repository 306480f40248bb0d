"""The calls of ``inference.GRPCInferenceService``, answered from one worker's model registry.

Every call goes through :meth:`InferenceServicer._handle`, the gRPC counterpart of the Flask
hooks of the HTTP API: a request id (the ``x-request-id`` metadata when it is a sane value, else
a new one, sent back in the initial metadata and on every log line), the caller's trace (a valid
``traceparent`` metadata tags the log lines with its ``trace_id`` and ``parent_id``), the API
key (``authorization: Bearer <key>`` metadata, as over HTTP; the health calls stay open), one
``request`` log line, the ``grpc_requests_*`` metrics, and errors: every failure becomes the
gRPC status of the HTTP error the same request gets over ``/v2``, with the same message. The
request message is parsed there too, so a malformed one is an ``INVALID_ARGUMENT`` that is
logged and counted like any other bad request.

Model calls follow the rules of ``/v2`` over HTTP (:mod:`service.api.v2_protocol`): one input,
``text`` (BYTES, shape ``[N]``), sent in ``raw_input_contents`` (as Triton's client does) or in
``contents.bytes_contents``; outputs come back in ``raw_output_contents``, which both Triton's
and KServe's clients read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from service.api.v2_binary import decode_bytes_elements, encode_tensor
from service.api.v2_protocol import (
    MODEL_CONFIGURATION,
    SERVER_NAME,
    check_input_names,
    check_requested_output,
    check_text_tensor,
    configure_model,
    describe_model,
    find_model,
    repository_index,
    server_version,
    utf8_strings,
    valid_texts,
)
from service.api.v2_schemas import ModelStatisticsResponse
from service.api.v2_statistics import EXTENSION as STATISTICS
from service.api.v2_statistics import model_statistics, served_models
from service.auth import KeyRing, parse_bearer
from service.errors import BadRequest, NotFound, Unauthorized, as_api_error
from service.grpc_api import messages
from service.log import (
    CALL_REQUEST_ID,
    CALL_TRACE,
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    request_id_from,
    trace_from,
)
from service.metrics import record_grpc_call
from service.runtime.batcher import CLIENT_ALIVE
from service.runtime.registry import ModelRegistry
from service.schemas import TextLimits
from service.settings import Settings

logger = logging.getLogger("service.requests")

REQUEST_ID_KEY = REQUEST_ID_HEADER.lower()  # gRPC metadata keys are lower case
PUBLIC_METHODS = frozenset({"ServerLive", "ServerReady"})  # probes, as /v2/health/* over HTTP
# Calls that wait for their model; at most GRPC_THREADS of them run at once in a worker.
MODEL_CALLS = frozenset({"ModelInfer"})

# The HTTP status of an error -> the gRPC status of the same error.
_STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,  # more tokens than one request may hold
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,  # the client left while the call waited for its model
    503: grpc.StatusCode.UNAVAILABLE,  # model not loaded, or its queue full: retry later
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# An error's message travels percent-encoded in a trailer (grpc-message), and clients refuse
# trailers over their metadata limit (grpc's default: 8 KiB, refusing some calls, to 16 KiB,
# refusing all), which would turn the error into RESOURCE_EXHAUSTED; a message that echoes a
# long name from the request is cut to this many bytes as sent.
MAX_DETAILS_BYTES = 4096


class _Call:
    """What one call's log line and metrics say about it, beside its method: its model (set
    once the model it names is found loaded)."""

    __slots__ = ("model",)

    def __init__(self) -> None:
        self.model = ""


class InferenceServicer:
    """The calls of the service, for the models of ``registry``."""

    def __init__(self, registry: ModelRegistry, settings: Settings):
        self.registry = registry
        self.limits = TextLimits(settings.max_texts_per_request, settings.max_text_chars)
        self.keys = KeyRing(settings.api_keys, settings.admin_api_keys)
        self.model_calls = threading.BoundedSemaphore(settings.grpc_threads)
        self._calls: dict[str, Callable[[Any, _Call], Message]] = {
            "ServerLive": self.server_live,
            "ServerReady": self.server_ready,
            "ModelReady": self.model_ready,
            "ServerMetadata": self.server_metadata,
            "ModelMetadata": self.model_metadata,
            "ModelInfer": self.model_infer,
            "ModelStatistics": self.model_statistics,
            "ModelConfig": self.model_config,
            "RepositoryIndex": self.repository_index,
        }

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's method handlers, for :meth:`grpc.Server.add_generic_rpc_handlers`."""
        handlers = {}
        for method, (_, response_class) in messages.METHODS.items():
            handlers[method] = grpc.unary_unary_rpc_method_handler(
                self._handler_for(method),
                request_deserializer=None,  # parsed in _handle: see the module's docstring
                response_serializer=response_class.SerializeToString,
            )
        return grpc.method_handlers_generic_handler(messages.SERVICE, handlers)

    def _handler_for(self, method: str) -> Callable[[bytes, grpc.ServicerContext], Message]:
        def handle(request: bytes, context: grpc.ServicerContext) -> Message:
            return self._handle(method, request, context)

        return handle

    def _handle(self, method: str, raw: bytes, context: grpc.ServicerContext) -> Message:
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata())
        request_id = request_id_from(metadata.get(REQUEST_ID_KEY))
        token = CALL_REQUEST_ID.set(request_id)
        trace_token = CALL_TRACE.set(trace_from(metadata.get(TRACEPARENT_HEADER)))
        alive_token = CLIENT_ALIVE.set(context.is_active)
        call = _Call()
        code = grpc.StatusCode.OK
        request_class, response_class = messages.METHODS[method]
        try:
            try:
                context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
            except grpc.RpcError:  # the client is gone
                code = grpc.StatusCode.CANCELLED
                return response_class()
            if method not in PUBLIC_METHODS:
                self._check_key(metadata.get("authorization"))
            try:
                request = request_class.FromString(raw)
            except DecodeError as exc:
                raise BadRequest(f"not a valid {request_class.__name__} message: {exc}") from None
            if method not in MODEL_CALLS:
                return self._calls[method](request, call)
            with self.model_calls:
                if not context.is_active():  # the client left while the call waited its turn
                    code = grpc.StatusCode.CANCELLED
                    return response_class()
                return self._calls[method](request, call)
        except Exception as exc:
            error = as_api_error(exc, where=f"gRPC {method}")
            code = _STATUS_CODES.get(error.status, grpc.StatusCode.INTERNAL)
            context.set_trailing_metadata(
                tuple((name.lower(), value) for name, value in error.headers.items())
            )
            context.set_code(code)
            context.set_details(_details(error.message))
            return response_class()
        finally:
            seconds = time.perf_counter() - started
            record_grpc_call(method, call.model, code.name, seconds)
            logger.info(
                "request",
                extra={
                    "method": "gRPC",
                    "path": f"/{messages.SERVICE}/{method}",
                    # Not "status", an HTTP status (a number) on the HTTP API's lines.
                    "grpc_code": code.name,
                    "model": call.model,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
            CALL_REQUEST_ID.reset(token)
            CALL_TRACE.reset(trace_token)
            CLIENT_ALIVE.reset(alive_token)

    def _check_key(self, authorization: str | None) -> None:
        if not self.keys.enabled:
            return
        key = parse_bearer(authorization)
        if key is None or not self.keys.is_valid(key):
            reason = "missing" if key is None else "invalid"
            raise Unauthorized(f"{reason} API key; send the metadata 'authorization: Bearer <key>'")

    def server_live(self, request: Any, call: _Call) -> Message:
        return messages.ServerLiveResponse(live=True)

    def server_ready(self, request: Any, call: _Call) -> Message:
        return messages.ServerReadyResponse(ready=self.registry.ready)

    def model_ready(self, request: Any, call: _Call) -> Message:
        """Ready when loaded; not ready when it failed to load, or is not served here (an
        unknown name or version), as Triton answers (and as a 404 reads over HTTP)."""
        if request.name in self.registry.errors and request.name not in self.registry.models:
            return messages.ModelReadyResponse(ready=False)  # labelled as over HTTP: no model
        try:
            self._find(request.name, request.version, call)
        except NotFound:
            return messages.ModelReadyResponse(ready=False)
        return messages.ModelReadyResponse(ready=True)

    def server_metadata(self, request: Any, call: _Call) -> Message:
        return messages.ServerMetadataResponse(
            name=SERVER_NAME,
            version=server_version(),
            extensions=[MODEL_CONFIGURATION, STATISTICS],
        )

    def model_metadata(self, request: Any, call: _Call) -> Message:
        model, adapter = self._find(request.name, request.version, call)
        described = describe_model(model, adapter)
        tensor = messages.ModelMetadataResponse.TensorMetadata
        return messages.ModelMetadataResponse(
            name=described.name,
            versions=described.versions,
            platform=described.platform,
            inputs=[tensor(**t.model_dump()) for t in described.inputs],
            outputs=[tensor(**t.model_dump()) for t in described.outputs],
        )

    def model_statistics(self, request: Any, call: _Call) -> Message:
        if request.name:
            models = [self._find(request.name, request.version, call)[0]]
        else:
            models = served_models(self.registry)
        answer = ModelStatisticsResponse(model_stats=model_statistics(models))
        return json_format.ParseDict(answer.model_dump(), messages.ModelStatisticsResponse())

    def model_config(self, request: Any, call: _Call) -> Message:
        model, adapter = self._find(request.name, request.version, call)
        config = configure_model(model, adapter).model_dump()
        return json_format.ParseDict({"config": config}, messages.ModelConfigResponse())

    def repository_index(self, request: Any, call: _Call) -> Message:
        index = repository_index(self.registry, request.repository_name, request.ready)
        return json_format.ParseDict(
            {"models": [entry.model_dump(exclude_none=True) for entry in index]},
            messages.RepositoryIndexResponse(),
        )

    def model_infer(self, request: Any, call: _Call) -> Message:
        model, adapter = self._find(request.model_name, request.model_version, call)
        with model.predictor.scheduler.incoming():  # batches wait for this request's rows
            texts = self._texts(request)
            available = adapter.outputs(model)
            wanted: list[str] = []
            for index, output in enumerate(request.outputs):
                parameters = parameter_values(output.parameters)
                check_requested_output(index, output.name, parameters, available, wanted)
                wanted.append(output.name)
            wanted = wanted or [o.name for o in available]
            outputs = adapter.infer(model, texts, parameter_values(request.parameters))
        by_name = {o.name: o for o in outputs}
        response = messages.ModelInferResponse(
            model_name=model.name, model_version=model.manifest.version, id=request.id
        )
        for name in wanted:  # in the order asked for, as over HTTP
            output = by_name[name]
            response.outputs.add(name=name, datatype=output.datatype, shape=output.data.shape)
            response.raw_output_contents.append(encode_tensor(output.datatype, output.data))
        return response

    def _find(self, name: str, version: str, call: _Call) -> Any:
        if name in self.registry.models:
            call.model = name
        return find_model(self.registry, name, version or None)

    def _texts(self, request: Any) -> list[str]:
        """The ``text`` input's strings, from ``raw_input_contents`` or ``contents``."""
        inputs = request.inputs
        check_input_names([i.name for i in inputs])
        (tensor,) = inputs
        check_text_tensor(tensor.datatype, list(tensor.shape))
        raw = request.raw_input_contents
        if raw:
            if len(raw) != len(inputs):
                raise BadRequest(
                    f"raw_input_contents has {len(raw)} entries for {len(inputs)} input(s)"
                )
            if tensor.HasField("contents"):
                raise BadRequest("input 'text' has both contents and raw_input_contents")
            values = utf8_strings(decode_bytes_elements(raw[0]))
        else:
            misplaced = [
                field.name
                for field, _ in tensor.contents.ListFields()
                if field.name != "bytes_contents"
            ]
            if misplaced:
                raise BadRequest(
                    f"input 'text' is BYTES: its strings go in contents.bytes_contents or "
                    f"raw_input_contents, not contents.{misplaced[0]}"
                )
            values = utf8_strings(list(tensor.contents.bytes_contents))
        return valid_texts(values, list(tensor.shape), self.limits)


def parameter_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as plain values (an unset parameter reads as None)."""
    values = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[name] = getattr(parameter, choice) if choice is not None else None
    return values


def _details(message: str) -> str:
    """``message``, cut to at most :data:`MAX_DETAILS_BYTES` once percent-encoded (printable
    ASCII but ``%`` as it is, any other character as ``%XX`` per UTF-8 byte)."""
    size = 0
    for end, char in enumerate(message):
        printable = " " <= char <= "~" and char != "%"
        size += 1 if printable else 3 * len(char.encode("utf-8", "surrogatepass"))
        if size > MAX_DETAILS_BYTES - 3:  # room for the "..."
            return message[:end] + "..."
    return message
