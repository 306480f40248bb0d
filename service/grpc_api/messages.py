"""The protocol's message classes, built from ``inference.binpb`` (``inference.proto`` and
``health.proto`` compiled by ``make proto``) in a descriptor pool of their own.

A pool of their own, not protobuf's default one: Triton's client library registers the same
``inference.*`` names there (from its own copy of the protocol), and a process that imports both
would otherwise fail with "duplicate symbol". Only the names of the service and its methods, and
the field numbers, travel on the wire, so the two copies interoperate.
"""

from __future__ import annotations

from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"
HEALTH_SERVICE = "grpc.health.v1.Health"  # the gRPC health checking protocol
DESCRIPTOR_FILE = "inference.binpb"


def _pool() -> descriptor_pool.DescriptorPool:
    data = resources.files(__package__).joinpath(DESCRIPTOR_FILE).read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    return pool


POOL = _pool()


def message_class(name: str) -> type[Message]:
    """The class of the message ``inference.<name>``."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


# The classes named by the servicer and the tests (METHODS holds every request and response).
ServerLiveRequest = message_class("ServerLiveRequest")
ServerLiveResponse = message_class("ServerLiveResponse")
ServerReadyResponse = message_class("ServerReadyResponse")
ModelReadyResponse = message_class("ModelReadyResponse")
ServerMetadataResponse = message_class("ServerMetadataResponse")
ModelMetadataResponse = message_class("ModelMetadataResponse")
ModelInferRequest = message_class("ModelInferRequest")
ModelInferResponse = message_class("ModelInferResponse")
ModelStatisticsResponse = message_class("ModelStatisticsResponse")
ModelConfigResponse = message_class("ModelConfigResponse")
RepositoryIndexResponse = message_class("RepositoryIndexResponse")

HealthCheckRequest = message_factory.GetMessageClass(
    POOL.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")
)
HealthCheckResponse = message_factory.GetMessageClass(
    POOL.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")
)

# Each method of the service: its request and response classes.
METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    method.name: (
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )
    for method in POOL.FindServiceByName(SERVICE).methods
}
