"""Request ids and structured (JSON) logs."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from service.log import JsonFormatter, RequestIdFilter, TextFormatter, iso_time


def test_a_sent_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})

    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("sent", [None, "", "x" * 200, "bad id with spaces", "<script>"])
def test_a_missing_or_unsafe_request_id_is_replaced(client: FlaskClient, sent) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}

    first = client.get("/v2/health/live", headers=headers).headers["X-Request-ID"]
    second = client.get("/v2/health/live", headers=headers).headers["X-Request-ID"]

    assert len(first) == 32 and first != second


def test_each_request_is_logged_with_its_id_model_and_status(client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="service.requests"):
        client.post("/v1/sentiment", json={"texts": ["good"]}, headers={"X-Request-ID": "r-1"})

    (record,) = [r for r in caplog.records if r.name == "service.requests"]
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request"
    assert line["request_id"] == "r-1"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v1/sentiment", 200)
    assert line["model"] == "sentiment"
    assert line["duration_ms"] > 0
    assert line["client"] == "127.0.0.1"  # the test client's address
    assert "forwarded_for" not in line  # no proxy in front
    assert {"time", "level", "logger", "pid"} <= set(line)
    # ISO 8601 to the millisecond, with the offset: lines of one second keep their order
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", line["time"])


def test_the_address_a_proxy_forwarded_is_logged_as_sent(client, caplog) -> None:
    forwarded = "203.0.113.7, 10.0.0.2"
    with caplog.at_level(logging.INFO, logger="service.requests"):
        client.post(
            "/v1/sentiment",
            json={"texts": ["good"]},
            headers={"X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "10.0.0.3"},
        )
        client.post(
            "/v1/sentiment", json={"texts": ["good"]}, headers={"X-Forwarded-For": "x" * 999}
        )

    first, second = [r for r in caplog.records if r.name == "service.requests"]
    assert (first.client, first.forwarded_for) == ("10.0.0.3", forwarded)
    assert second.forwarded_for == "x" * 256


def test_routine_probes_and_scrapes_are_logged_at_debug_and_failures_at_info(
    app_factory, tiny_model_dir, client, caplog
) -> None:
    unready = app_factory(tiny_model_dir, models=("sentiment", "nosuch")).test_client()
    with caplog.at_level(logging.DEBUG, logger="service.requests"):
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert client.get(path).status_code == 200
        assert unready.get("/v2/health/ready").status_code == 503
        client.post("/v1/sentiment", json={"texts": ["good"]})

    levels = [
        (r.path, r.status, r.levelname) for r in caplog.records if r.name == "service.requests"
    ]
    assert levels == [
        ("/v2/health/live", 200, "DEBUG"),
        ("/v2/health/ready", 200, "DEBUG"),
        ("/metrics", 200, "DEBUG"),
        ("/v2/health/ready", 503, "INFO"),
        ("/v1/sentiment", 200, "INFO"),
    ]


def test_a_text_request_line_says_as_much_as_a_json_one(client, caplog) -> None:
    """LOG_FORMAT=text: the request line carries method, path, status, model and duration."""
    with caplog.at_level(logging.INFO, logger="service.requests"):
        client.post("/v1/sentiment", json={"texts": ["good"]}, headers={"X-Request-ID": "r-2"})

    (record,) = [r for r in caplog.records if r.name == "service.requests"]
    line = TextFormatter().format(record)
    assert "[r-2] service.requests: request method=POST path=/v1/sentiment status=200" in line
    assert "model=sentiment duration_ms=" in line and "\n" not in line


def test_a_text_line_escapes_what_the_client_sent(client, caplog) -> None:
    """A path is the client's: with its CR LF and escape sequences written as they came, it
    could forge a line of its own or drive the terminal that shows the log."""
    with caplog.at_level(logging.INFO, logger="service.requests"):
        client.get("/x%0d%0aFAKE-LINE%1b[2J%e2%80%a8", headers={"X-Request-ID": "r-3"})

    (record,) = [r for r in caplog.records if r.name == "service.requests"]
    line = TextFormatter().format(record)
    assert "path=/x\\x0d\\x0aFAKE-LINE\\x1b[2J\\u2028 status=404" in line
    assert not any(c in line for c in "\r\n\x1b\u2028")


def test_json_lines_carry_exceptions_and_outside_requests_a_dash() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "service.x", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    RequestIdFilter().filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == "failed x"
    assert line["request_id"] == "-"
    assert "ValueError: boom" in line["exception"]


TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _request_line(client, caplog, traceparent: str | None) -> dict:
    headers = {} if traceparent is None else {"traceparent": traceparent}
    with caplog.at_level(logging.INFO, logger="service.requests"):
        client.post("/v1/sentiment", json={"texts": ["good"]}, headers=headers)
    (record,) = [r for r in caplog.records if r.name == "service.requests"]
    return json.loads(JsonFormatter().format(record))


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-00",  # not sampled: still the same trace
        f"  00-{TRACE_ID}-{PARENT_ID}-01 ",
        f"01-{TRACE_ID}-{PARENT_ID}-01-a-later-version-s-field",
    ],
)
def test_a_w3c_traceparent_tags_the_request_s_lines_with_its_trace(client, caplog, traceparent):
    line = _request_line(client, caplog, traceparent)

    assert (line["trace_id"], line["parent_id"]) == (TRACE_ID, PARENT_ID)


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "",
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper-case hex
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        "not a traceparent",
    ],
)
def test_a_missing_or_invalid_traceparent_is_ignored(client, caplog, traceparent) -> None:
    line = _request_line(client, caplog, traceparent)

    assert "trace_id" not in line and "parent_id" not in line
    assert line["status"] == 200


@given(st.floats(min_value=0, max_value=4e9) | st.sampled_from([1700000000.001, 59.9999999]))
def test_times_are_datetime_s_iso_8601_to_the_millisecond(created: float) -> None:
    # Formatted from a cache of whole seconds: every request writes a line.
    expected = datetime.fromtimestamp(created).astimezone().isoformat("T", "milliseconds")
    assert iso_time(created) == expected
