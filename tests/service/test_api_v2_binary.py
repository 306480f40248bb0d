"""The binary tensor data codec of the Open Inference Protocol, checked against tritonclient's."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from service.api.v2_binary import (
    BinaryFormatError,
    decode_bytes_elements,
    encode_bytes_elements,
    encode_tensor,
    join_body,
    split_body,
    take_binary_parts,
)

ELEMENTS = [b"great", b"", "Zürich 東京 🙂".encode(), b"\x00\xff"]


def test_bytes_elements_round_trip_with_tritonclient() -> None:
    ours = encode_bytes_elements(ELEMENTS)

    assert ours == serialize_byte_tensor(np.array(ELEMENTS, dtype=object)).item()
    assert decode_bytes_elements(ours) == ELEMENTS
    assert list(deserialize_bytes_tensor(ours)) == ELEMENTS
    assert ours[:4] == (5).to_bytes(4, "little")


def test_numbers_are_little_endian_row_major() -> None:
    data = np.array([[1.5, -2.0], [0.25, 3.0]], dtype=">f4")  # big-endian in memory

    raw = encode_tensor("FP32", data)

    assert np.frombuffer(raw, "<f4").tolist() == [1.5, -2.0, 0.25, 3.0]


@pytest.mark.parametrize(
    "raw", [b"\x05\x00\x00", b"\x05\x00\x00\x00abc", (1).to_bytes(4, "little") + b"ab"]
)
def test_truncated_bytes_data_is_refused(raw: bytes) -> None:
    with pytest.raises(BinaryFormatError):
        decode_bytes_elements(raw)


def test_a_body_is_split_at_the_header_length() -> None:
    assert split_body(b'{"a":1}xyz', "7") == (b'{"a":1}', b"xyz")
    assert split_body(b'{"a":1}', None) == (b'{"a":1}', b"")
    for bad in ("x", "0", "99"):
        with pytest.raises(BinaryFormatError):
            split_body(b'{"a":1}xyz', bad)


def test_binary_parts_must_use_every_byte() -> None:
    assert take_binary_parts([3, None, 2], b"abcde") == [b"abc", None, b"de"]
    with pytest.raises(BinaryFormatError, match="add up to more"):
        take_binary_parts([6], b"abcde")
    with pytest.raises(BinaryFormatError, match="belong to no input"):
        take_binary_parts([2], b"abcde")


def test_a_response_body_is_json_then_binary_with_the_json_byte_length() -> None:
    body, length = join_body({"name": "zürich"}, [b"\x01", b"\x02"])

    assert length == len('{"name":"zürich"}'.encode())
    assert body[length:] == b"\x01\x02"
    assert join_body({"a": 1}, []) == (b'{"a":1}', None)
