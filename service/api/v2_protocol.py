"""The Open Inference Protocol's rules that do not depend on the transport: which model a
request names, what the server and a model say about themselves, which texts a ``text`` input
holds and which outputs a request wants. Its REST form (:mod:`service.api.v2`) and its gRPC form
(:mod:`service.grpc_api`) both go through here, so the two answer alike.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from importlib import metadata
from typing import Any

from pydantic import ValidationError

from service.api.v2_schemas import (
    ConfigParameter,
    ConfigTensor,
    ModelConfig,
    ModelMetadata,
    RepositoryModel,
    TensorMetadata,
)
from service.api.v2_tasks import TEXT_INPUT, V2_ADAPTERS, TaskAdapter
from service.errors import BadRequest, NotFound, NotReady, ValidationFailed
from service.runtime.registry import LoadedModel, ModelRegistry
from service.schemas import TextBatch, TextLimits

SERVER_NAME = "rnn-inference-service"
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
MODEL_CONFIGURATION = "model_configuration"  # the extension's name in the server metadata
CLASSIFICATION = "classification"  # an output parameter of an extension not served here
READY, UNAVAILABLE = "READY", "UNAVAILABLE"  # model states in the repository index


def find_model(
    registry: ModelRegistry, name: str, version: str | None
) -> tuple[LoadedModel, TaskAdapter]:
    """The loaded model ``name`` (at ``version``, when given) and its task's adapter."""
    model = registry.models.get(name)
    if model is None:
        if name in registry.errors:
            raise NotReady(f"model {name!r} failed to load: {registry.errors[name]}")
        raise NotFound(f"unknown model {name!r}; loaded models: {sorted(registry.models)}")
    if version is not None and version != model.manifest.version:
        raise no_version(model, version)
    adapter = V2_ADAPTERS.get(model.manifest.task)
    if adapter is None:
        raise NotFound(
            f"model {name!r} ({model.manifest.task}) is not served by the Open Inference Protocol"
        )
    return model, adapter


def repository_index(
    registry: ModelRegistry, repository_name: str, ready_only: bool
) -> list[RepositoryModel]:
    """Every configured model, as Triton's model repository index lists them: ``READY`` with
    the version served (also while a failed reload keeps it serving), else ``UNAVAILABLE`` with
    the reason it failed to load; with ``ready_only``, the ready ones only. This server has one
    repository, MODEL_DIR, whose name is empty, as Triton's client sends it."""
    if repository_name:
        raise BadRequest(
            f"no repository {repository_name!r}: this server has one, MODEL_DIR, and its "
            "repository_name is empty"
        )
    index = []
    for name in sorted({*registry.models, *registry.errors}):
        model = registry.models.get(name)
        if model is not None:
            index.append(RepositoryModel(name=name, version=model.manifest.version, state=READY))
        elif not ready_only:
            reason = registry.errors[name]
            index.append(RepositoryModel(name=name, state=UNAVAILABLE, reason=reason))
    return index


def no_version(model: LoadedModel, version: str) -> NotFound:
    return NotFound(
        f"model {model.name!r} has no version {version!r}; it serves {model.manifest.version!r}"
    )


def describe_model(model: LoadedModel, adapter: TaskAdapter) -> ModelMetadata:
    """What ``GET /v2/models/{name}`` (and gRPC's ModelMetadata) says of ``model``."""
    return ModelMetadata(
        name=model.name,
        versions=[model.manifest.version],
        platform=PLATFORM,
        inputs=[TEXT_INPUT],
        outputs=adapter.outputs(model),
        parameters={
            "task": model.manifest.task,
            "labels": model.manifest.labels,
            "execution_providers": model.providers,
            "metrics": model.metrics,
            "precision": model.precision,
        },
    )


def configure_model(model: LoadedModel, adapter: TaskAdapter) -> ModelConfig:
    """What ``GET /v2/models/{name}/config`` (and gRPC's ModelConfig) says of ``model``, in
    the terms of Triton's model configuration: the metadata's tensors with Triton's data type
    names, and ``max_batch_size`` 0, since a request's ``text`` tensor is the whole batch (the
    service batches its rows with other requests' by itself). Version, task, precision and
    labels go in ``parameters``, which Triton's configuration holds as strings."""
    described = describe_model(model, adapter)
    settings = {
        "version": model.manifest.version,
        "task": model.manifest.task,
        "precision": model.precision,
    } | ({"labels": ",".join(model.manifest.labels)} if model.manifest.labels else {})
    return ModelConfig(
        name=model.name,
        platform=PLATFORM,
        backend=BACKEND,
        max_batch_size=0,
        input=[_config_tensor(t) for t in described.inputs],
        output=[_config_tensor(t) for t in described.outputs],
        parameters={k: ConfigParameter(string_value=v) for k, v in settings.items()},
    )


def _config_tensor(tensor: TensorMetadata) -> ConfigTensor:
    # The protocol's BYTES is Triton's TYPE_STRING; the other names only gain the prefix.
    data_type = "STRING" if tensor.datatype == "BYTES" else tensor.datatype
    return ConfigTensor(name=tensor.name, data_type=f"TYPE_{data_type}", dims=tensor.shape)


def check_input_names(names: Sequence[str]) -> None:
    """A request has exactly one input, ``text``."""
    if list(names) != [TEXT_INPUT.name]:
        raise BadRequest(f"expected exactly one input, 'text'; got {list(names)}")


def check_text_tensor(datatype: str, shape: Sequence[int]) -> None:
    """The ``text`` input is BYTES, of shape ``[N]``."""
    if datatype != TEXT_INPUT.datatype:
        raise BadRequest(f"input 'text' must be BYTES, got {datatype}")
    if len(shape) != 1:
        raise BadRequest(f"input 'text' must have shape [N], got {list(shape)}")


def valid_texts(values: Sequence[Any], shape: Sequence[int], limits: TextLimits) -> list[str]:
    """The ``text`` input's values, once they match its shape and the service's limits."""
    if len(values) != shape[0]:
        raise BadRequest(f"input 'text' has shape {list(shape)} but {len(values)} elements")
    try:
        return TextBatch.model_validate({"text": list(values)}, context={"limits": limits}).text
    except ValidationError as exc:
        raise BadRequest(ValidationFailed.from_pydantic(exc).message) from None


def utf8_strings(elements: Sequence[bytes]) -> list[str]:
    """BYTES elements as text."""
    try:
        return [element.decode("utf-8") for element in elements]
    except UnicodeDecodeError as exc:
        raise BadRequest(f"input 'text' is not valid UTF-8: {exc}") from None


def check_requested_output(
    index: int,
    name: str,
    parameters: Mapping[str, Any],
    available: Sequence[TensorMetadata],
    wanted: Collection[str],
) -> None:
    """``outputs[index]`` must name one of the model's outputs, once, without asking for the
    classification extension."""
    names = [o.name for o in available]
    if name not in names:
        raise BadRequest(f"unknown output {name!r}; this model has {names}")
    if name in wanted:
        raise BadRequest(f"outputs[{index}]: output {name!r} is requested twice")
    if CLASSIFICATION in parameters:  # tritonclient's class_count
        raise BadRequest(
            f"outputs[{index}].parameters.{CLASSIFICATION}: the classification extension is not "
            "supported; sentiment's label, score and probabilities outputs hold the classes"
        )


def server_version() -> str:
    try:
        return metadata.version(SERVER_NAME)
    except metadata.PackageNotFoundError:
        return "unknown"
