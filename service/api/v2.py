"""The Open Inference Protocol (KServe V2, as Triton speaks it) beside ``/v1``.

``GET /v2`` (server metadata), ``GET /v2/models/{name}`` (model metadata),
``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``,
``GET /v2/models/{name}/config`` (the model configuration extension) and
``GET /v2/models/{name}/stats`` (the statistics extension; ``GET /v2/models/stats``: every
model), each also under ``/v2/models/{name}/versions/{version}/``, and ``POST
/v2/repository/index`` (the index of Triton's model repository extension, whose load and unload
are not served: ``POST /v1/models/{name}/reload`` reloads a model). (The health probes
``/v2/health/*`` are in :mod:`service.api.health`.) A request carries one input, ``text``
(BYTES, shape ``[N]``); the outputs per task are in :mod:`service.api.v2_tasks`. Both the JSON
form and the binary tensor data extension (:mod:`service.api.v2_binary`) are understood, so
``tritonclient.http`` works with its defaults. Errors are ``{"error": "message"}``, as the
protocol has it (rendered by :func:`service.errors.register_error_handlers` for every path under
``/v2`` but the health probes).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from service.api.body import json_object, read_body
from service.api.v2_binary import (
    BINARY_DATA,
    BINARY_DATA_OUTPUT,
    BINARY_DATA_SIZE,
    HEADER_LENGTH,
    decode_bytes_elements,
    encode_tensor,
    join_body,
    split_body,
    take_binary_parts,
)
from service.api.v2_protocol import (
    MODEL_CONFIGURATION,
    SERVER_NAME,
    check_input_names,
    check_requested_output,
    check_text_tensor,
    configure_model,
    describe_model,
    find_model,
    no_version,
    repository_index,
    server_version,
    utf8_strings,
    valid_texts,
)
from service.api.v2_schemas import (
    InferRequest,
    InferResponse,
    ModelReady,
    ModelStatisticsResponse,
    RepositoryIndexRequest,
    RequestInput,
    ResponseOutput,
    ServerMetadata,
)
from service.api.v2_statistics import EXTENSION as STATISTICS
from service.api.v2_statistics import model_statistics, served_models
from service.api.v2_tasks import OutputTensor, TaskAdapter
from service.errors import V2_PREFIX, BadRequest, field_path, json_type_name
from service.metrics import tag_model
from service.runtime.registry import LoadedModel, ModelRegistry
from service.schemas import TextLimits

EXTENSIONS = ["binary_tensor_data", MODEL_CONFIGURATION, STATISTICS]


def v2_blueprint(registry: ModelRegistry, limits: TextLimits) -> Blueprint:
    """Server and model metadata, model readiness and configuration, statistics and inference,
    the V2 way."""
    blueprint = Blueprint("v2", __name__, url_prefix=V2_PREFIX)

    @blueprint.get("")
    def server_metadata() -> dict[str, Any]:
        return ServerMetadata(
            name=SERVER_NAME, version=server_version(), extensions=EXTENSIONS
        ).model_dump()

    @blueprint.get("/models/<name>")
    @blueprint.get("/models/<name>/versions/<version>")
    def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        model, adapter = _find(registry, name, version)
        return describe_model(model, adapter).model_dump()

    @blueprint.get("/models/<name>/config")
    @blueprint.get("/models/<name>/versions/<version>/config")
    def model_config(name: str, version: str | None = None) -> dict[str, Any]:
        model, adapter = _find(registry, name, version)
        return configure_model(model, adapter).model_dump()

    @blueprint.get("/models/<name>/ready")
    @blueprint.get("/models/<name>/versions/<version>/ready")
    def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        model, _ = _find(registry, name, version)
        return ModelReady(name=model.name, ready=True).model_dump()

    @blueprint.get("/models/stats")
    @blueprint.get("/models/<name>/stats")
    @blueprint.get("/models/<name>/versions/<version>/stats")
    def statistics(name: str | None = None, version: str | None = None) -> dict[str, Any]:
        models = served_models(registry) if name is None else [_find(registry, name, version)[0]]
        return ModelStatisticsResponse(model_stats=model_statistics(models)).model_dump()

    @blueprint.post("/repository/index")
    def repository() -> Response:
        raw = read_body()
        try:
            body = RepositoryIndexRequest.model_validate(json_object(raw, "{}") if raw else {})
        except ValidationError as exc:
            raise BadRequest(f"invalid repository index request: {_first_problem(exc)}") from None
        index = repository_index(registry, body.repository_name, body.ready)
        return jsonify([entry.model_dump(exclude_none=True) for entry in index])

    @blueprint.post("/models/<name>/infer")
    @blueprint.post("/models/<name>/versions/<version>/infer")
    def infer(name: str, version: str | None = None) -> Response:
        model, adapter = _find(registry, name, version)
        with model.predictor.scheduler.incoming():  # batches wait for this request's rows
            raw = read_body()
            body, binary = split_body(raw, request.headers.get(HEADER_LENGTH))
            infer_request = _parse_header(body)
            _check_model_named(infer_request, model)
            texts = _texts(infer_request, binary, limits)
            wanted = _wanted_outputs(infer_request, adapter.outputs(model))
            outputs = adapter.infer(model, texts, infer_request.parameters)
        by_name = {output.name: output for output in outputs}
        # In the order asked for (every output: the metadata's order), as Triton answers.
        return _response(model, infer_request.id, [by_name[name] for name in wanted], wanted)

    return blueprint


def _find(
    registry: ModelRegistry, name: str, version: str | None
) -> tuple[LoadedModel, TaskAdapter]:
    """:func:`find_model`, with this request's metrics labelled by the model when it is loaded."""
    if name in registry.models:
        tag_model(name)
    return find_model(registry, name, version)


def _check_model_named(infer_request: InferRequest, model: LoadedModel) -> None:
    """A ``model_name`` or ``model_version`` in the body must be the URL's model, served."""
    if infer_request.model_name not in (None, model.name):
        raise BadRequest(
            f"model_name {infer_request.model_name!r} in the body is not the model of the URL, "
            f"{model.name!r}"
        )
    if infer_request.model_version not in (None, model.manifest.version):
        raise no_version(model, infer_request.model_version)


def _parse_header(body: bytes) -> InferRequest:
    data = json_object(body, example='{"inputs": [...]}')  # read as /v1 reads its bodies
    try:
        return InferRequest.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(f"invalid inference request: {_first_problem(exc)}") from None


def _texts(infer_request: InferRequest, binary: bytes, limits: TextLimits) -> list[str]:
    """The ``text`` input's strings, from JSON ``data`` or from the binary part."""
    inputs = infer_request.inputs
    sizes = [_binary_size(i) for i in inputs]
    parts = take_binary_parts(sizes, binary)
    check_input_names([i.name for i in inputs])
    (tensor,), (raw,) = inputs, parts
    check_text_tensor(tensor.datatype, tensor.shape)
    values = utf8_strings(decode_bytes_elements(raw)) if raw is not None else _json_strings(tensor)
    return valid_texts(values, tensor.shape, limits)


def _binary_size(tensor: RequestInput) -> int | None:
    size = tensor.parameters.get(BINARY_DATA_SIZE)
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool):
        raise BadRequest(f"input {tensor.name!r}: {BINARY_DATA_SIZE} must be an integer")
    if tensor.data is not None:
        raise BadRequest(f"input {tensor.name!r} has both 'data' and {BINARY_DATA_SIZE}")
    return size


def _json_strings(tensor: RequestInput) -> list[Any]:
    if tensor.data is None:
        raise BadRequest(f"input 'text' has neither 'data' nor {BINARY_DATA_SIZE}")
    # Row-major data may be sent nested ([["a"], ["b"]]) or flat.
    return [v for item in tensor.data for v in (item if isinstance(item, list) else [item])]


def _wanted_outputs(infer_request: InferRequest, available: list[Any]) -> dict[str, bool]:
    """Requested output names -> whether each is wanted as binary data."""
    default_binary = _flag(infer_request.parameters, BINARY_DATA_OUTPUT, False, "parameters")
    names = [o.name for o in available]
    if not infer_request.outputs:  # absent or empty (as KServe's server reads it): every output
        return dict.fromkeys(names, default_binary)
    wanted: dict[str, bool] = {}
    for index, output in enumerate(infer_request.outputs):
        check_requested_output(index, output.name, output.parameters, available, wanted)
        where = f"outputs[{index}].parameters"
        wanted[output.name] = _flag(output.parameters, BINARY_DATA, default_binary, where)
    return wanted


def _flag(parameters: dict[str, Any], name: str, default: bool, where: str) -> bool:
    """The boolean parameter ``name``; the binary tensor data extension makes it a JSON
    boolean, so ``"false"`` (a non-empty string) must not read as true."""
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(
            f"{where}.{name} must be a boolean (true or false), got {json_type_name(value)}"
        )
    return value


def _response(
    model: LoadedModel, request_id: str | None, outputs: list[OutputTensor], binary: dict[str, bool]
) -> Response:
    described, parts = [], []
    for output in outputs:
        entry = ResponseOutput(
            name=output.name, datatype=output.datatype, shape=list(output.data.shape)
        )
        if binary[output.name]:
            part = encode_tensor(output.datatype, output.data)
            entry.parameters = {BINARY_DATA_SIZE: len(part)}
            parts.append(part)
        else:
            entry.data = _json_data(output)
        described.append(entry)
    header = InferResponse(
        model_name=model.name,
        model_version=model.manifest.version,
        id=request_id,
        outputs=described,
    ).model_dump(exclude_none=True)
    body, header_length = join_body(header, parts)
    if header_length is None:
        return Response(body, mimetype="application/json")
    response = Response(body, mimetype="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(header_length)
    return response


def _json_data(output: OutputTensor) -> list[Any]:
    flat = output.data.reshape(-1)
    if output.datatype == "BYTES":
        return [bytes(v).decode("utf-8") for v in flat]
    return flat.tolist()


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = field_path(error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]
