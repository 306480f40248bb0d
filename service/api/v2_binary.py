"""The binary tensor data extension of the Open Inference Protocol (KServe V2 / Triton).

A request or response body is a JSON header followed by raw tensor bytes: the header's length
is in the ``Inference-Header-Content-Length`` HTTP header, and each tensor sent in binary says
how many bytes it takes with ``parameters.binary_data_size``, in the order the tensors are
listed. Numbers are little-endian; a BYTES tensor is its elements one after another, each a
4-byte little-endian length followed by that many bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.errors import BadRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_DATA_SIZE = "binary_data_size"
# Booleans that ask for outputs in binary: the request's default, and one output's own choice.
BINARY_DATA_OUTPUT = "binary_data_output"
BINARY_DATA = "binary_data"

_LENGTH = struct.Struct("<I")
# V2 datatype -> little-endian numpy dtype (BYTES is handled apart).
NUMPY_DTYPES = {
    "BOOL": np.dtype("?"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


class BinaryFormatError(BadRequest):
    """A body that does not follow the binary tensor data extension (a 400)."""


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary part of a request body (all JSON when no header)."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise BinaryFormatError(
            f"{HEADER_LENGTH} must be an integer, got {header_length!r}"
        ) from None
    if not 0 < length <= len(body):
        raise BinaryFormatError(f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes")
    return body[:length], body[length:]


def take_binary_parts(sizes: Sequence[int | None], binary: bytes) -> list[bytes | None]:
    """Cut ``binary`` into consecutive parts of ``sizes`` (None: that tensor has no binary
    data); every byte must be used."""
    parts: list[bytes | None] = []
    offset = 0
    for size in sizes:
        if size is None:
            parts.append(None)
            continue
        if size < 0 or offset + size > len(binary):
            raise BinaryFormatError(
                f"{BINARY_DATA_SIZE} values add up to more than the {len(binary)} bytes of "
                "binary data after the JSON header"
            )
        parts.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise BinaryFormatError(
            f"{len(binary) - offset} bytes of binary data after the JSON header belong to no "
            f"input (the {BINARY_DATA_SIZE} values add up to {offset})"
        )
    return parts


def decode_bytes_elements(raw: bytes) -> list[bytes]:
    """The elements of a binary BYTES tensor."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise BinaryFormatError("BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise BinaryFormatError(
                f"a BYTES element of {length} bytes runs past the end of its data"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def encode_bytes_elements(elements: Sequence[bytes]) -> bytes:
    """A binary BYTES tensor: each element's 4-byte little-endian length, then the element."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def encode_tensor(datatype: str, data: np.ndarray) -> bytes:
    """The binary form of a tensor (row-major)."""
    if datatype == "BYTES":
        return encode_bytes_elements([bytes(e) for e in data.reshape(-1)])
    return np.ascontiguousarray(data, dtype=NUMPY_DTYPES[datatype]).tobytes()


def join_body(header: dict[str, Any], binary_parts: Sequence[bytes]) -> tuple[bytes, int | None]:
    """A response body, and the header length to send (None when it is all JSON)."""
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if not binary_parts:
        return head, None
    return head + b"".join(binary_parts), len(head)
