"""Logging: one JSON object per line (or plain text), each tagged with the request id.

Every request gets an id, taken from its ``X-Request-ID`` header when that is a sane value, else
generated; it is returned in the response's ``X-Request-ID`` header and added to every log line
written while the request is handled, so a client's report can be matched to the server's log.
One ``request`` line per request records method, path, status, model, duration and the client's
address (and the ``X-Forwarded-For`` a proxy in front added, as sent). The health probes and
``/metrics``, which orchestrators and Prometheus call every few seconds, log theirs at DEBUG
when they answer 200.

A request that carries a valid W3C ``traceparent`` header (a service mesh, or a client
instrumented with OpenTelemetry, sends one) also has its lines tagged with ``trace_id`` and
``parent_id`` (the caller's span), so they can be found from the trace; an invalid one is ignored,
as the W3C Trace Context recommendation asks.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import re
import time
import uuid
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from pydantic_core import to_json

REQUEST_ID_HEADER = "X-Request-ID"
TRACEPARENT_HEADER = "traceparent"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
FORWARDED_FOR_HEADER = "X-Forwarded-For"
_MAX_FORWARDED_FOR = 256  # characters of it logged (a client can send anything)
# Called every few seconds by orchestrators and Prometheus: their 200s are logged at DEBUG.
_ROUTINE_PATHS = ("/v2/health/", "/metrics")
# version-trace_id-parent_id-flags, lower-case hex; a later version may add "-..." fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-.*)?")
_TEXT_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] [%(request_id)s] %(name)s: %(message)s"
# LogRecord attributes that are not extras passed with ``extra=``.
_STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

Trace = tuple[str, str]  # trace_id, parent_id

logger = logging.getLogger("service.requests")

# The id of the call being handled outside Flask (a gRPC call, in its own thread).
CALL_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
CALL_TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("trace", default=None)


def request_id_from(sent: str | None) -> str:
    """The id a client sent, when it is a sane one; else a new one."""
    return sent if sent and _SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def trace_from(traceparent: str | None) -> Trace | None:
    """The trace id and parent id of a W3C ``traceparent`` value, or None when it is missing or
    invalid (https://www.w3.org/TR/trace-context/#traceparent-header): version ``ff``, an
    all-zero id, upper-case hex, or version ``00`` with anything after its four fields."""
    match = _TRACEPARENT.fullmatch(traceparent.strip(" \t")) if traceparent else None
    if match is None:
        return None
    version, trace_id, parent_id, more = match.groups()
    if version == "ff" or (version == "00" and more is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the id of the request being handled, or ``-``; and, when the
    request came with a valid ``traceparent``, ``record.trace_id`` and ``record.parent_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id", "-")
            trace = g.get("trace")
        else:
            record.request_id = CALL_REQUEST_ID.get()
            trace = CALL_TRACE.get()
        if trace is not None:
            record.trace_id, record.parent_id = trace
        return True


def iso_time(created: float) -> str:
    """``created`` (seconds since the epoch) in ISO 8601, local time with its offset, to the
    millisecond: ``2026-11-24T15:37:53.101+00:00``."""
    second = math.floor(created)
    micros = round((created - second) * 1_000_000)  # as datetime rounds, then truncates to ms
    if micros == 1_000_000:
        second, micros = second + 1, 0
    date_time, offset = _iso_second(second)
    return f"{date_time}.{micros // 1000:03d}{offset}"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> tuple[str, str]:
    """The date and time of a whole second, and the offset (a line's time is formatted for
    every request: most lines share their second with the previous one)."""
    moment = datetime.fromtimestamp(second).astimezone()
    text = moment.isoformat("T", "seconds")
    return text[:19], text[19:]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, pid, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD_FIELDS}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return to_json(entry, fallback=str).decode()


# Control characters and line separators, written as escapes: a request's path or a header is
# the client's, and could otherwise start a forged line or drive the terminal.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


class TextFormatter(logging.Formatter):
    """A plain line per record, its extras appended as ``key=value`` (a request line's method,
    path, status, model and duration), their control characters escaped."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{k}={str(v).translate(_ESCAPES)}"
            for k, v in vars(record).items()
            if k not in _STANDARD_FIELDS
        ]
        if not extras:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the first line
        return f"{head} {' '.join(extras)}{newline}{rest}"


def configure_logging(level: str, fmt: str = "json") -> None:
    """Send the ``service`` loggers to stderr (gunicorn's error log) at ``level``, once."""
    service_logger = logging.getLogger("service")
    service_logger.setLevel(level)
    if not service_logger.handlers:
        handler = logging.StreamHandler()
        handler.addFilter(RequestIdFilter())
        service_logger.addHandler(handler)
    for handler in service_logger.handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())


def install_request_ids(app: Flask) -> None:
    """Give every request of ``app`` an id, echo it in the response and log the request."""

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.trace = trace_from(request.headers.get(TRACEPARENT_HEADER))
        g.request_started = time.perf_counter()

    @app.after_request
    def echo_and_log(response: Response) -> Response:
        if "request_id" not in g:  # a failure before before_request ran
            return response
        response.headers[REQUEST_ID_HEADER] = g.request_id
        routine = response.status_code == 200 and request.path.startswith(_ROUTINE_PATHS)
        extra = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "model": g.get("model_name", ""),
            "duration_ms": round((time.perf_counter() - g.request_started) * 1000, 3),
            "client": request.remote_addr or "",
        }
        forwarded_for = request.headers.get(FORWARDED_FOR_HEADER)
        if forwarded_for:
            extra["forwarded_for"] = forwarded_for[:_MAX_FORWARDED_FOR]
        logger.log(logging.DEBUG if routine else logging.INFO, "request", extra=extra)
        return response
