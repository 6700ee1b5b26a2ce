"""Log lines are one JSON object each, with the service and the current request id."""

from __future__ import annotations

import json
import logging

from shared.logging import JsonFormatter
from shared.request_context import request_id_var


def record(msg: str, **extra: object) -> logging.LogRecord:
    log_record = logging.LogRecord("test", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(log_record, key, value)
    return log_record


def test_line_carries_service_request_id_and_extras() -> None:
    token = request_id_var.set("req-12345678")
    try:
        line = JsonFormatter("user_service").format(record("signed up", user_id=7,
                                                            color_message="\x1b[36mnoise"))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["service"] == "user_service"
    assert entry["request_id"] == "req-12345678"
    assert entry["msg"] == "signed up"
    assert entry["extra"] == {"user_id": 7}
    assert entry["ts"].endswith("Z")
    assert "color_message" not in entry["extra"]


def test_extras_cannot_overwrite_the_lines_own_fields() -> None:
    line = JsonFormatter("gateway").format(record("upstream failure", service="stock",
                                                  level="x"))
    entry = json.loads(line)
    assert entry["service"] == "gateway"
    assert entry["level"] == "info"
    assert entry["msg"] == "upstream failure"
    assert entry["extra"] == {"service": "stock", "level": "x"}


def test_no_request_id_outside_a_request() -> None:
    entry = json.loads(JsonFormatter("gateway").format(record("started")))
    assert "request_id" not in entry


def test_a_line_is_ascii_so_nothing_in_a_message_can_split_it() -> None:
    # U+2028 and U+0085 end a line for some log readers; a path may carry them (percent-decoded).
    line = JsonFormatter("gateway").format(record("GET /api/v1/\u2028x\u0085y/caf\u00e9"))
    assert line.isascii()
    assert json.loads(line)["msg"] == "GET /api/v1/\u2028x\u0085y/caf\u00e9"
