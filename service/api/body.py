"""Reading a request body (within ``MAX_BODY_BYTES``, gzip or deflate compressed or not) and a
JSON one into a pydantic model, with 400/413/415/422 errors that say why."""

from __future__ import annotations

import json
import sys
import zlib
from typing import Any, TypeVar

from flask import current_app, request
from gunicorn.http.errors import ParseException
from pydantic import BaseModel, ValidationError

from service.errors import (
    BadRequest,
    UnsupportedMediaType,
    ValidationFailed,
    body_too_large,
    json_type_name,
)

Body = TypeVar("Body", bound=BaseModel)

# Content-Encoding values read (tritonclient's request_compression_algorithm sends either).
ENCODINGS = ("gzip", "deflate")
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS  # zlib's window bits that take either header


def read_body() -> bytes:
    """The request body, decompressed, at most ``MAX_BODY_BYTES`` (413 otherwise).

    werkzeug refuses a longer body announced by ``Content-Length`` but cuts a chunked one at the
    limit without a word, which would read as malformed JSON: here it is a 413 too. A
    compressed body must also stay within the limit once decompressed.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    try:
        raw = request.get_data(cache=False)
        cut = limit is not None and request.content_length is None and len(raw) >= limit
        if cut and request.environ["wsgi.input"].read(1):  # chunked, sent on past the limit
            raise body_too_large()
    except (ParseException, OSError) as exc:  # gunicorn: a malformed chunk or trailer
        raise BadRequest(f"request body could not be read: {exc}") from None
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    encoding = "gzip" if encoding == "x-gzip" else encoding  # HTTP/1.1's alias
    if encoding in ("", "identity"):
        return raw
    if encoding not in ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send the body as it is, or "
            f"compressed with {' or '.join(ENCODINGS)}",
            details={"supported": list(ENCODINGS)},
        )
    return _decompress(raw, encoding, limit)


MAX_MEMBERS = 64


def _decompress(raw: bytes, encoding: str, limit: int | None) -> bytes:
    """``raw`` decompressed (gzip members one after another, as ``gzip.decompress`` reads them,
    at most ``MAX_MEMBERS``: each one copies what follows it, so a body of many tiny members
    cost time that grows with the square of its size), never more than ``limit`` + 1 bytes."""
    body, rest, members = b"", raw, 0
    while rest:
        members += 1
        if members > MAX_MEMBERS:
            raise BadRequest(
                f"request body holds more than {MAX_MEMBERS} {encoding} streams one after another"
            )
        inflate = zlib.decompressobj(_GZIP_OR_ZLIB)
        room = limit + 1 - len(body) if limit is not None else 0
        try:
            body += inflate.decompress(rest, room)
        except zlib.error as exc:
            raise BadRequest(f"request body is not valid {encoding} data: {exc}") from None
        if limit is not None and len(body) > limit:
            raise body_too_large()
        if not inflate.eof:
            raise BadRequest(f"request body is not valid {encoding} data: it ends too early")
        rest = inflate.unused_data
    return body


def parse_body(schema: type[Body], context: dict[str, Any] | None = None) -> Body:
    """Parse the request body as a JSON object and validate it against ``schema``.

    The content type is not enforced, so ``curl -d '{"texts": [...]}'`` works as it is.
    Bodies over ``MAX_BODY_BYTES`` raise a 413 while being read (:func:`read_body`).
    """
    data = json_object(read_body())
    try:
        return schema.model_validate(data, context=context)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def json_object(raw: bytes, example: str = '{"texts": ["..."]}') -> dict[str, Any]:
    """``raw`` parsed as a JSON object (UTF-8, -16 or -32, as ``json.loads`` reads it), else a
    400 that says why."""
    if not raw.strip():
        raise BadRequest(f"request body is empty; send a JSON object such as {example}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        if "integer string conversion" in str(exc):  # Python's guard against huge numbers
            digits = sys.get_int_max_str_digits()
            raise BadRequest(f"request body holds a number of more than {digits} digits") from None
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(
            f"request body must be a JSON object such as {example}, got {json_type_name(data)}"
        )
    return data
