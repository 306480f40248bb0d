"""API errors and the one place that turns any failure into a JSON error response.

Handlers raise an :class:`ApiError` subclass; :func:`as_api_error` turns any failure (an
``ApiError``, a full batcher queue or a missed deadline, werkzeug's own HTTP errors, anything
unexpected) into one, and :func:`register_error_handlers` renders it as::

    {"error": {"code": "validation_failed", "message": "texts[3]: ...", "details": [...]}}

On the Open Inference Protocol's paths (everything under ``/v2`` but the health probes, see
:func:`speaks_inference_protocol`) the same errors take that protocol's shape,
``{"error": "message"}``: routing errors (404, 405) and body-size errors too, which no blueprint
handler would see.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from service.predictors.budget import RequestTooLarge
from service.runtime.batcher import BatchFailed, ClientGone, DeadlineExceeded, QueueFull
from service.schemas import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)

V2_PREFIX = "/v2"
V2_HEALTH_PREFIX = "/v2/health/"


class ApiError(Exception):
    """An error a client can act on: an HTTP status, a stable code and a readable message."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the response, shaped by ``service.schemas.ErrorResponse``."""
        body = ErrorBody(code=self.code, message=self.message, details=self.details)
        return ErrorResponse(error=body).model_dump(mode="json")


class BadRequest(ApiError):
    """The body is not JSON, or not a JSON object."""

    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    """API keys are configured and the request has no valid ``Authorization: Bearer`` key."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """The key is valid but does not allow this (e.g. reloading needs an admin key)."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """No route or resource with that name."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ApiError):
    """The body is larger than ``MAX_BODY_BYTES``."""

    status = 413
    code = "payload_too_large"


class TooManyTokens(ApiError):
    """The request would make its model process more than ``MAX_REQUEST_TOKENS`` tokens."""

    status = 413
    code = "too_many_tokens"

    @classmethod
    def from_request_too_large(cls, exc: RequestTooLarge) -> TooManyTokens:
        return cls(str(exc), details={"tokens": exc.tokens, "max_request_tokens": exc.limit})


class UnsupportedMediaType(ApiError):
    """The body is compressed with an encoding the service does not read."""

    status = 415
    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    """The body is a JSON object but does not match the request schema."""

    status = 422
    code = "validation_failed"

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> ValidationFailed:
        """One entry per problem, each naming the offending field like ``texts[3]``."""
        problems = [
            {"field": field_path(err["loc"]), "message": _error_message(err), "type": err["type"]}
            for err in exc.errors(include_url=False)
        ]
        first = problems[0]
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more problem(s), see details)"
        return cls(message, details=problems)


class ReloadFailed(ApiError):
    """The model folder could not be loaded; a model loaded before keeps serving."""

    status = 409
    code = "reload_failed"


class NotReady(ApiError):
    """The model needed for the request is not loaded (see ``GET /v2/health/ready``)."""

    status = 503
    code = "not_ready"


class Overloaded(ApiError):
    """Too many requests wait for the model in this worker; retry after ``Retry-After``."""

    status = 503
    code = "overloaded"

    @classmethod
    def from_queue_full(cls, exc: QueueFull) -> Overloaded:
        return cls(
            str(exc),
            details={"model": exc.model, "retry_after_s": exc.retry_after_s},
            headers={"Retry-After": str(exc.retry_after_s)},
        )


class Timeout(ApiError):
    """The request was not answered within ``REQUEST_TIMEOUT_S``."""

    status = 504
    code = "timeout"

    @classmethod
    def from_deadline(cls, exc: DeadlineExceeded) -> Timeout:
        return cls(str(exc), details={"model": exc.model, "timeout_s": exc.timeout_s})


class ClientClosedRequest(ApiError):
    """The client closed its connection while the request waited for the model: nginx's 499,
    for the log and the metrics (no one reads the answer)."""

    status = 499
    code = "client_closed_request"

    @classmethod
    def from_client_gone(cls, exc: ClientGone) -> ClientClosedRequest:
        return cls(str(exc), details={"model": exc.model})


class HttpError(ApiError):
    """Any other HTTP error werkzeug raises, keeping its status code."""

    def __init__(self, exc: HTTPException):
        super().__init__(exc.description or exc.name)
        self.status = exc.code or 500
        self.code = exc.name.lower().replace(" ", "_")


class InternalError(ApiError):
    """An unexpected failure; the trace is in the server log, never in the response."""

    status = 500
    code = "internal_error"


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error's location as a client writes it: ``texts[3]``, ``inputs[0].shape``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


_JSON_TYPE_NAMES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def json_type_name(value: Any) -> str:
    """How a client would name the JSON type of a parsed value: 'a string', 'an array'..."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _error_message(err: Any) -> str:
    """pydantic's message, plus what was sent for type errors (``got a number``)."""
    message = err["msg"]
    if err["type"] == "missing":
        return "field required"
    if err["type"] == "extra_forbidden":
        return "unknown field (not part of the request schema)"
    if err["type"].endswith("_type"):
        return f"{message[0].lower()}{message[1:]}, got {json_type_name(err.get('input'))}"
    return message


def _from_http_exception(exc: HTTPException) -> ApiError:
    """Translate werkzeug's routing and body-size errors into our error classes."""
    if exc.code == 404:
        return NotFound(f"no route for {request.method} {request.path}")
    if exc.code == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        return MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
            details={"allowed_methods": allowed},
            headers={"Allow": ", ".join(allowed)},
        )
    if exc.code == 413:
        return body_too_large()
    return HttpError(exc)


def body_too_large() -> PayloadTooLarge:
    """413 for a body (as sent, or once decompressed) over ``MAX_BODY_BYTES``."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return PayloadTooLarge(
        f"request body is larger than {limit} bytes; send fewer or shorter texts per request",
        details={"max_body_bytes": limit},
    )


def as_api_error(exc: Exception, where: str | None = None) -> ApiError:
    """The :class:`ApiError` that answers ``exc``; an unexpected one is logged with its trace.
    ``where`` names the call in the log (default: this HTTP request's method and path)."""
    where = where or f"{request.method} {request.path}"
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, QueueFull):
        error = Overloaded.from_queue_full(exc)
    elif isinstance(exc, DeadlineExceeded):
        error = Timeout.from_deadline(exc)
    elif isinstance(exc, ClientGone):
        error = ClientClosedRequest.from_client_gone(exc)
    elif isinstance(exc, RequestTooLarge):
        error = TooManyTokens.from_request_too_large(exc)
    elif isinstance(exc, HTTPException):
        error = _from_http_exception(exc)
    elif isinstance(exc, BatchFailed):  # the batcher logged the failure's trace, once
        logger.error("%s -> 500: %s: %r", where, exc, exc.__cause__)
        return InternalError("internal server error; the details are in the server log")
    else:
        logger.error("unhandled error on %s", where, exc_info=exc)
        return InternalError("internal server error; the details are in the server log")
    if error.status >= 500:
        logger.warning("%s -> %d %s", where, error.status, error.message)
    return error


def speaks_inference_protocol(path: str) -> bool:
    """Whether errors on ``path`` take the Open Inference Protocol's shape: every path under
    ``/v2`` but the health probes under ``/v2/health/``, which are this service's own (documented
    with ``ErrorResponse`` in its OpenAPI document, their 503 naming the models that failed;
    protocol clients read only their status)."""
    under_v2 = path == V2_PREFIX or path.startswith(f"{V2_PREFIX}/")
    return under_v2 and not path.startswith(V2_HEALTH_PREFIX)


def register_error_handlers(app: Flask) -> None:
    """Make every failure a JSON error body with the right status: ``ErrorResponse``, or
    ``{"error": "message"}`` where :func:`speaks_inference_protocol`."""

    @app.errorhandler(Exception)
    def handle_any(exc: Exception) -> tuple[Response, int, dict[str, str]]:
        error = as_api_error(exc)
        if speaks_inference_protocol(request.path):
            return jsonify({"error": error.message}), error.status, error.headers
        return jsonify(error.to_dict()), error.status, error.headers
