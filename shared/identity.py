"""The caller's identity as set by the gateway. Services trust these headers and never parse tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.contracts import (
    CLIENT_IP_HEADER,
    SESSION_ID_HEADER,
    USER_ID_HEADER,
    is_session_id,
    parse_user_id,
)
from shared.errors import Unauthorized


async def current_user_id(request: Request) -> int:
    user_id = parse_user_id(request.headers.get(USER_ID_HEADER))
    if user_id is None:
        raise Unauthorized("This route needs a signed-in user.")
    return user_id


async def current_session_id(request: Request) -> str:
    """The caller's login session; the gateway sets it beside X-User-Id on every signed-in call."""
    session_id = request.headers.get(SESSION_ID_HEADER)
    if not is_session_id(session_id):
        raise Unauthorized("This route needs the caller's session (X-Session-Id).")
    return session_id


async def client_ip(request: Request) -> str:
    """The gateway replaces X-Forwarded-For with the one address it resolved; fall back to the peer."""
    forwarded = request.headers.get(CLIENT_IP_HEADER)
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


CurrentUser = Annotated[int, Depends(current_user_id)]
CurrentSession = Annotated[str, Depends(current_session_id)]
ClientIp = Annotated[str, Depends(client_ip)]
