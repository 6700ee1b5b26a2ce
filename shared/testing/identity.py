"""Acting as the gateway in a service's tests: the identity headers it forwards, signed.

    response = await client.get("/api/v1/orders", headers=identity_headers(new_user_id()))
    response = await client.get("/api/v1/orders", headers=signed_identity_headers(user_id, sid))

The root conftest puts TEST_IDENTITY_SIGNING_KEY in the environment (IDENTITY_SIGNING_KEY), so
every Settings a test builds, and every service process it starts, checks with the same key.
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid

from shared.contracts import (
    ARRIVED_AT_HEADER,
    CLIENT_IP_HEADER,
    GATEWAY_CALLER,
    IDENTITY_CALLER_HEADER,
    IDENTITY_SIGNATURE_HEADER,
    REQUEST_ID_HEADER,
    SELLER_ROLE,
    SESSION_ID_HEADER,
    USER_ID_HEADER,
    USER_ROLES_HEADER,
    identity_signature,
    roles_header,
)

# New for every test run: no key in the repository could ever sign a real deployment's requests.
TEST_IDENTITY_SIGNING_KEY = f"test-only-{secrets.token_urlsafe(32)}"


def signed_identity_headers(
    user_id: int | None,
    session_id: str | None,
    key: str = TEST_IDENTITY_SIGNING_KEY,
    *,
    client_ip: str = "127.0.0.1",
    request_id: str | None = None,
    timestamp: int | None = None,
    roles: frozenset[str] = frozenset(),
    caller: str = GATEWAY_CALLER,
    arrived_at_us: int | None = None,
) -> dict[str, str]:
    """What the gateway sends with a request: a signed-in caller (user_id and session_id), or
    none (both None, as on a public route), and the client address it resolved. (`caller`:
    another service's package, for service_identity_headers.)"""
    request_id = request_id or uuid.uuid4().hex
    user = "" if user_id is None else str(user_id)
    session = session_id or ""
    role_names = roles_header(roles)
    arrived_at = "" if arrived_at_us is None else str(arrived_at_us)
    signature = identity_signature(
        key.encode(), timestamp=int(time.time()) if timestamp is None else timestamp,
        user_id=user, session_id=session, request_id=request_id, client_ip=client_ip,
        roles=role_names, caller=caller, arrived_at=arrived_at,
    )
    headers = {REQUEST_ID_HEADER: request_id, CLIENT_IP_HEADER: client_ip,
               IDENTITY_SIGNATURE_HEADER: signature, IDENTITY_CALLER_HEADER: caller}
    if user_id is not None:
        headers[USER_ID_HEADER] = user
    if session_id is not None:
        headers[SESSION_ID_HEADER] = session
    if role_names:
        headers[USER_ROLES_HEADER] = role_names
    if arrived_at:
        headers[ARRIVED_AT_HEADER] = arrived_at
    return headers


# Ids of users the tests make up (a service that never asks user_service takes any id), far above
# the ids user_service hands out and never the same twice in one run.
_user_ids = itertools.count(10**12 + secrets.randbelow(10**12), 1 + secrets.randbelow(999))


def new_user_id() -> int:
    return next(_user_ids)


def identity_headers(user_id: int, *, roles: frozenset[str] = frozenset(),
                     arrived_at_us: int | None = None) -> dict[str, str]:
    """What the gateway forwards for a signed-in user (a new session each call), signed as the
    gateway signs it. The one place service tests build identity, so a change in how services
    trust the gateway is a change here only."""
    return signed_identity_headers(user_id, secrets.token_hex(16), roles=roles,
                                   arrived_at_us=arrived_at_us)


def seller_headers(user_id: int) -> dict[str, str]:
    """identity_headers of a user an operator granted the `seller` role (who lists products)."""
    return identity_headers(user_id, roles=frozenset({SELLER_ROLE}))


def service_identity_headers(caller: str, key: str = TEST_IDENTITY_SIGNING_KEY) -> dict[str, str]:
    """What the service `caller` (a package name) signs an internal call with (shared.http): no
    user, no client address. Internal routes refuse anything the gateway signed, and callers
    they do not name."""
    return signed_identity_headers(None, None, key, client_ip="", caller=caller)
