"""JSON log lines that carry the service name, the current request id and, while tracing is on,
the current trace and span id; what a call passes in `extra=` goes under the line's "extra"
key, where it cannot overwrite those fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from shared import tracing
from shared.request_context import current_request_id

# uvicorn adds color_message (the same text with ANSI colours) to its records: noise in JSON.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        traced = tracing.active()
        if traced is not None and (ids := traced.log_ids()) is not None:
            entry["trace_id"], entry["span_id"] = ids
        # A call's `extra=` goes under a key of its own: `extra={"service": ...}` once overwrote
        # the line's own service and attributed the gateway's lines to another app.
        extra = {key: value for key, value in record.__dict__.items()
                 if key not in _RESERVED and not key.startswith("_")}
        if extra:
            entry["extra"] = extra
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # ASCII only: U+2028, U+0085 and their kind, which some readers take for line ends,
        # arrive escaped, so nothing a client sends (a path) can split a line or forge one.
        return json.dumps(entry, default=str, ensure_ascii=True)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route its lines through ours so every line is JSON.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    # shared.metrics writes the access line (with route, duration and request id); uvicorn's own
    # would be a second, plain one. uvicorn logs access lines only when this logger has handlers.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
