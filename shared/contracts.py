"""Contracts between the gateway and the services, written once and imported by both sides.

A change here changes what one process writes and another reads; both sides must deploy it.
"""

from __future__ import annotations

import re
from typing import TypeGuard

# Headers the gateway alone sets on a forwarded request (it drops any a client sent).
USER_ID_HEADER = "X-User-Id"
SESSION_ID_HEADER = "X-Session-Id"
CLIENT_IP_HEADER = "X-Forwarded-For"

# Ids are positive integers below 2**53 (API.md), so JavaScript clients hold them exactly.
MAX_ID = 2**53 - 1
# ASCII digits only, at most 16 of them (2**53 has 16): str.isdigit() also accepts "²", which
# int() refuses, and int() refuses strings of over 4300 digits; either would be a 500.
_USER_ID = re.compile(r"[0-9]{1,16}")
# A login session's id (the access token's `sid` claim): 32 lowercase hex characters.
# fullmatch, never ^...$: `$` also matches before a trailing newline.
_SESSION_ID = re.compile(r"[0-9a-f]{32}")


def parse_user_id(raw: object) -> int | None:
    """The user id in `raw` (a header value or a token's `sub`), or None if it is not one."""
    if not isinstance(raw, str) or not _USER_ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def is_session_id(raw: object) -> TypeGuard[str]:
    return isinstance(raw, str) and _SESSION_ID.fullmatch(raw) is not None


# Access tokens: user_service signs with these, the gateway verifies against them.
JWT_ISSUER = "preorder-user-service"
JWT_AUDIENCE = "preorder-api"

# To revoke a session, user_service sets this key on the Redis the gateway reads; while it
# exists the gateway answers 401 `token_revoked` to every access token of that session.
REVOKED_SESSION_KEY = "auth:revoked-session:{sid}"


def revoked_session_key(session_id: str) -> str:
    return REVOKED_SESSION_KEY.format(sid=session_id)


# user_service answers on this route whether a user exists: 200 {"id": <id>}, or 404 problem+json.
# Internal: the gateway never routes /internal/**; social_service asks it before a follow.
INTERNAL_USER_PATH = "/internal/users/{user_id}"


def internal_user_path(user_id: int) -> str:
    return INTERNAL_USER_PATH.format(user_id=user_id)
