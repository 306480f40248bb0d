"""Logging: one JSON object per line (or plain text), each tagged with the request id.

Every request gets an id, taken from its ``X-Request-ID`` header when that is a sane value, else
generated; it is returned in the response's ``X-Request-ID`` header and added to every log line
written while the request is handled, so a client's report can be matched to the server's log.
One ``request`` line per request records method, path, status, model and duration.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from pydantic_core import to_json

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_TEXT_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] [%(request_id)s] %(name)s: %(message)s"
# LogRecord attributes that are not extras passed with ``extra=``.
_STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

logger = logging.getLogger("service.requests")

# The id of the call being handled outside Flask (a gRPC call, in its own thread).
CALL_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def request_id_from(sent: str | None) -> str:
    """The id a client sent, when it is a sane one; else a new one."""
    return sent if sent and _SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the id of the request being handled, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id", "-")
        else:
            record.request_id = CALL_REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, pid, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
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


class TextFormatter(logging.Formatter):
    """A plain line per record, its extras appended as ``key=value`` (a request line's method,
    path, status, model and duration)."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD_FIELDS]
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
        g.request_started = time.perf_counter()

    @app.after_request
    def echo_and_log(response: Response) -> Response:
        if "request_id" not in g:  # a failure before before_request ran
            return response
        response.headers[REQUEST_ID_HEADER] = g.request_id
        logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "model": g.get("model_name", ""),
                "duration_ms": round((time.perf_counter() - g.request_started) * 1000, 3),
            },
        )
        return response
