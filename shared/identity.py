"""The caller's identity as set by the gateway. Services trust these headers and never parse tokens."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request

from shared.errors import Unauthorized

USER_ID_HEADER = "X-User-Id"
SESSION_ID_HEADER = "X-Session-Id"
CLIENT_IP_HEADER = "X-Forwarded-For"


# ASCII digits only, at most 16 of them (2**53 has 16): str.isdigit() also accepts "²", which
# int() refuses, and int() refuses strings of over 4300 digits; either would be a 500.
_USER_ID = re.compile(r"[0-9]{1,16}")


async def current_user_id(request: Request) -> int:
    raw = request.headers.get(USER_ID_HEADER)
    if raw is None or not _USER_ID.fullmatch(raw) or not 0 < int(raw) < 2**53:
        raise Unauthorized("This route needs a signed-in user.")
    return int(raw)


async def current_session_id(request: Request) -> str | None:
    return request.headers.get(SESSION_ID_HEADER)


async def client_ip(request: Request) -> str:
    """The gateway replaces X-Forwarded-For with the one address it resolved; fall back to the peer."""
    forwarded = request.headers.get(CLIENT_IP_HEADER)
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


CurrentUser = Annotated[int, Depends(current_user_id)]
CurrentSession = Annotated[str | None, Depends(current_session_id)]
ClientIp = Annotated[str, Depends(client_ip)]
