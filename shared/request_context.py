"""Per-request context: the request id every log line and error body carries (set by
shared.middleware.RequestFrameMiddleware)."""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
# A client may pick its own id so that its logs and ours line up; anything odd is replaced
# rather than echoed, so a header can never smuggle control characters into our logs.
# fullmatch, not ^...$: `$` also matches before a trailing newline.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{8,128}")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


def new_request_id() -> str:
    # 128 random bits as 32 hex characters, like uuid4().hex without building a UUID object.
    return os.urandom(16).hex()


def sanitize_request_id(value: str | None) -> str:
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()
