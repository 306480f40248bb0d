"""JSON bodies of the Open Inference Protocol (KServe V2) endpoints under ``/v2``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt


def _none_is_empty(value: Any) -> Any:
    return {} if value is None else value


# ``parameters`` objects: optional in the protocol; clients that serialize absent fields as null
# (KServe's data models type them Optional) send ``"parameters": null``.
Parameters = Annotated[dict[str, Any], BeforeValidator(_none_is_empty)]


class TensorMetadata(BaseModel):
    """Name, datatype and shape (-1 for a dynamic axis) of a model input or output."""

    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    """Body of ``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """Body of ``GET /v2/models/{name}``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(
        description="task, labels in output order, execution providers in use, metrics"
    )


class ConfigTensor(BaseModel):
    """An input or output in Triton's model configuration: ``TYPE_*`` data type, full shape
    (-1 for a dynamic axis; the configuration has no batch dimension: ``max_batch_size`` 0)."""

    name: str
    data_type: str
    dims: list[int]


class ConfigParameter(BaseModel):
    string_value: str


class ModelConfig(BaseModel):
    """Body of ``GET /v2/models/{name}/config``: the fields of Triton's ``ModelConfig`` that
    describe a model served here (the model configuration extension)."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    parameters: dict[str, ConfigParameter]


class RepositoryIndexRequest(BaseModel):
    """Body of ``POST /v2/repository/index`` (Triton's model repository extension); Triton's
    client sends none."""

    model_config = ConfigDict(extra="forbid")

    repository_name: str = ""
    ready: bool = False  # only the models ready for inference


class RepositoryModel(BaseModel):
    """One model of the repository index: ``READY``, or ``UNAVAILABLE`` with the reason."""

    name: str
    version: str | None = None  # of the model served; none when it failed to load
    state: str
    reason: str | None = None


class ModelReady(BaseModel):
    """Body of ``GET /v2/models/{name}/ready``."""

    name: str
    ready: bool


class RequestInput(BaseModel):
    """One input tensor; ``data`` is absent when it travels as binary data."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[StrictInt]
    datatype: str
    parameters: Parameters = Field(default_factory=dict)
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """An output the client wants, and whether in binary (``parameters.binary_data``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: Parameters = Field(default_factory=dict)


class InferRequest(BaseModel):
    """Body (or JSON header) of ``POST /v2/models/{name}/infer``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    # Not in the protocol's request body, but KServe's Python client sends both: they must name
    # the model and version of the URL.
    model_name: str | None = None
    model_version: str | None = None
    parameters: Parameters = Field(default_factory=dict)
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None  # absent or empty: every output


class ResponseOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    """Body (or JSON header) of an inference response."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class StatisticDuration(BaseModel):
    """How many times something happened, and how long it took in all (nanoseconds)."""

    count: int
    ns: int


class InferStatistics(BaseModel):
    """A model's requests and graph calls since the server started (see
    :mod:`service.api.v2_statistics`)."""

    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    cache_hit: StatisticDuration
    cache_miss: StatisticDuration


class BatchStatistics(BaseModel):
    """The graph calls of one batch size."""

    batch_size: int
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration


class ModelStatistics(BaseModel):
    """One model's statistics (the statistics extension)."""

    name: str
    version: str
    last_inference: int = Field(description="milliseconds since the epoch; 0: never ran")
    inference_count: int
    execution_count: int
    inference_stats: InferStatistics
    batch_stats: list[BatchStatistics]


class ModelStatisticsResponse(BaseModel):
    """Body of ``GET /v2/models[/{name}[/versions/{version}]]/stats``."""

    model_stats: list[ModelStatistics]
