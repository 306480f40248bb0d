"""The gRPC health checking protocol (``grpc.health.v1.Health/Check``) on GRPC_PORT, which
Kubernetes' gRPC probes and grpc_health_probe call: SERVING when every model of the worker is
loaded (as ``GET /v2/health/ready``), else NOT_SERVING, for the whole server (service ``""``) and
for ``inference.GRPCInferenceService``; any other service is NOT_FOUND. No key is needed, as for
the HTTP probes. A check never waits for the turns of inference calls (GRPC_THREADS), but counts
among GRPC_MAX_CONCURRENT_CALLS, which a flood of calls can fill: HEALTH_PORT answers probes from
threads of their own, whatever gRPC holds."""

from __future__ import annotations

import grpc

from service.grpc_api import messages
from service.runtime.registry import ModelRegistry

_Status = messages.HealthCheckResponse.ServingStatus
SERVICES = ("", messages.SERVICE)


def health_handler(registry: ModelRegistry) -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health`` for :meth:`grpc.Server.add_generic_rpc_handlers`."""

    def check(request: messages.HealthCheckRequest, context: grpc.ServicerContext):
        if request.service not in SERVICES:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no service {request.service!r} here; services: {list(SERVICES)}",
            )
        status = _Status.Value("SERVING") if registry.ready else _Status.Value("NOT_SERVING")
        return messages.HealthCheckResponse(status=status)

    method = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=messages.HealthCheckRequest.FromString,
        response_serializer=messages.HealthCheckResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(messages.HEALTH_SERVICE, {"Check": method})
