"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``, as Triton's and
KServe's gRPC clients speak it), served from inside each gunicorn worker when GRPC_PORT is set.

* :mod:`service.grpc_api.messages`: the protocol's message classes, from ``inference.proto``;
* :mod:`service.grpc_api.servicer`: the calls, answered from the worker's model registry through
  the same rules as ``/v2`` over HTTP (:mod:`service.api.v2_protocol`);
* :mod:`service.grpc_api.server`: the server;
* :mod:`service.grpc_api.worker`: its life in a gunicorn worker: started once the worker's models
  are loaded, handed over to newer workers, stopped when the worker exits.

Nothing here is imported unless GRPC_PORT is set: grpcio is then loaded in the workers only,
after the fork (gRPC does not survive a fork of a process that has started it).
"""
