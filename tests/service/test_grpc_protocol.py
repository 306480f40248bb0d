"""``service/grpc_api/inference.binpb`` is ``inference.proto`` and ``health.proto`` compiled, and
the first is the protocol that Triton's gRPC client speaks: the same service, methods and field
numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import model_config_pb2, service_pb2

from service.grpc_api import messages

PROTO_DIR = Path(messages.__file__).parent


def compiled(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "inference.binpb"
    subprocess.run(
        [
            *(sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}"),
            f"--descriptor_set_out={out}",
            "inference.proto",
            "health.proto",
        ],
        check=True,
        capture_output=True,
    )
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_the_committed_descriptor_is_the_proto_compiled(tmp_path: Path) -> None:
    committed = descriptor_pb2.FileDescriptorSet.FromString(
        (PROTO_DIR / messages.DESCRIPTOR_FILE).read_bytes()
    )

    assert committed == compiled(tmp_path), "inference.proto changed: run `make proto`"


def _fields(ours: Descriptor, theirs: Descriptor, path: str) -> list[str]:
    """Where the fields of ``ours`` differ on the wire from those of ``theirs``."""
    problems = []
    for field in ours.fields:
        other = theirs.fields_by_name.get(field.name)
        where = f"{path}.{field.name}"
        if other is None:
            problems.append(f"{where}: not in Triton's protocol")
        elif (field.number, field.type, field.is_repeated) != (
            other.number,
            other.type,
            other.is_repeated,
        ):
            problems.append(f"{where}: number, type or repetition differ")
        elif field.message_type is not None:
            problems += _fields(field.message_type, other.message_type, where)
    return problems


@pytest.mark.parametrize(
    "name", sorted(messages.POOL.FindFileByName("inference.proto").message_types_by_name)
)
def test_each_message_is_tritons_on_the_wire(name: str) -> None:
    """Triton keeps the model configuration's messages in a file of their own, in the same
    package."""
    ours = messages.POOL.FindMessageTypeByName(f"inference.{name}")
    theirs = (
        service_pb2.DESCRIPTOR.message_types_by_name.get(name)
        or model_config_pb2.DESCRIPTOR.message_types_by_name[name]
    )

    assert _fields(ours, theirs, name) == []


def test_each_method_is_one_of_tritons() -> None:
    ours = messages.POOL.FindServiceByName(messages.SERVICE)
    theirs = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]

    assert ours.full_name == theirs.full_name
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.name, method.output_type.name) == (
            other.input_type.name,
            other.output_type.name,
        )
    assert sorted(messages.METHODS) == sorted(m.name for m in ours.methods)


@pytest.mark.parametrize(
    "name", sorted(messages.POOL.FindFileByName("inference.proto").enum_types_by_name)
)
def test_each_enum_is_tritons(name: str) -> None:
    ours = messages.POOL.FindEnumTypeByName(f"inference.{name}")
    theirs = model_config_pb2.DESCRIPTOR.enum_types_by_name[name]

    assert {v.name: v.number for v in ours.values} == {v.name: v.number for v in theirs.values}
