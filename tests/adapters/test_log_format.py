"""``LOG_FORMAT=json``: one JSON object a line, with the request and the subjects named."""

from __future__ import annotations

import json
import logging

import pytest

from adapters.log_format import REQUEST_ID, JsonFormatter

pytestmark = pytest.mark.unit


def test_a_line_is_one_json_object_with_the_role_request_and_subjects() -> None:
    formatter = JsonFormatter("api,projector")
    record = logging.LogRecord("engine.x", logging.WARNING, __file__, 1, "sent %s", ("it",), None)
    record.account_id = "a1"
    record.message_id = "m1"
    token = REQUEST_ID.set("req-7")
    try:
        line = formatter.format(record)
    finally:
        REQUEST_ID.reset(token)
    assert "\n" not in line
    document = json.loads(line)
    assert (document["level"], document["logger"], document["message"]) == (
        "WARNING", "engine.x", "sent it")  # fmt: skip
    assert (document["role"], document["request_id"]) == ("api,projector", "req-7")
    assert (document["account_id"], document["message_id"]) == ("a1", "m1")
    assert "campaign_id" not in document


def test_a_traceback_stays_on_the_line() -> None:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    document = json.loads(JsonFormatter("worker").format(record))
    assert "ValueError: broken" in document["exception"]
