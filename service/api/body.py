"""Reading a JSON request body into a pydantic model, with 400/422 errors that say why."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from service.errors import BadRequest, ValidationFailed, json_type_name

Body = TypeVar("Body", bound=BaseModel)


def parse_body(schema: type[Body], context: dict[str, Any] | None = None) -> Body:
    """Parse the request body as a JSON object and validate it against ``schema``.

    The content type is not enforced, so ``curl -d '{"texts": [...]}'`` works as it is.
    Bodies over ``MAX_CONTENT_LENGTH`` raise werkzeug's 413 while being read.
    """
    data = _json_object(request.get_data(cache=False))
    try:
        return schema.model_validate(data, context=context)
    except ValidationError as exc:
        raise ValidationFailed.from_pydantic(exc) from None


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise BadRequest('request body is empty; send a JSON object such as {"texts": ["..."]}')
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(
            f'request body must be a JSON object such as {{"texts": [...]}}, '
            f"got {json_type_name(data)}"
        )
    return data
