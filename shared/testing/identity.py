"""Acting as the gateway (or a calling service) in a service's tests: the identity headers it
forwards, signed for the one request they go with.

    response = await client.get("/api/v1/orders", headers=identity_headers(new_user_id()))
    response = await client.get("/api/v1/orders", headers=signed_identity_headers(user_id, sid))

A signature covers the request's method, path, query, body and the service addressed, so these
helpers cannot sign when they are called: they leave what to sign in a test-only header, and
the test client signs at send time (sign_at_send, an httpx request hook, which the clients of
running_app and of the sale system carry). A client without it sends the marker, which every
service refuses (401): a test never passes unsigned by mistake.

The root conftest puts a fresh key of every app into the environment (TEST_IDENTITY_KEYS), so
every Settings a test builds, and every service process it starts, checks with them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    request_target,
    roles_header,
)
from shared.identity_keys import (
    IdentitySigner,
    IdentityVerifier,
    identity_environment,
    new_identity_keys,
    parse_public_keys,
)
from shared.services import GATEWAY, SERVICES

# New for every test run: no key in the repository could ever sign a real deployment's requests.
# One for every app, so a test may sign as any caller (and see the ones a route does not name
# refused).
TEST_IDENTITY_KEYS = new_identity_keys(app.package for app in (GATEWAY, *SERVICES))
TEST_IDENTITY_ENVIRONMENT = identity_environment(TEST_IDENTITY_KEYS)
# The key of a signer the deployment does not know (`key=` of the helpers below).
DEPLOYMENT_KEY = "the deployment's"
# What the helpers leave for sign_at_send; never sent.
SIGN_AT_SEND = "X-Test-Sign-At-Send"
_PENDING = "sign-at-send"


def signer(caller: str, key: str = DEPLOYMENT_KEY) -> IdentitySigner:
    """Signs as `caller` with its test key, or (any other `key`) with a key derived from `key`
    that the deployment never listed: a forger's."""
    if key == DEPLOYMENT_KEY:
        return IdentitySigner(caller, TEST_IDENTITY_KEYS[caller])
    seed = hashlib.sha256(key.encode()).digest()
    return IdentitySigner(caller, Ed25519PrivateKey.from_private_bytes(seed))


def signed_identity_headers(
    user_id: int | None,
    session_id: str | None,
    key: str = DEPLOYMENT_KEY,
    *,
    client_ip: str = "127.0.0.1",
    request_id: str | None = None,
    timestamp: int | None = None,
    roles: frozenset[str] = frozenset(),
    caller: str = GATEWAY_CALLER,
    audience: str | None = None,
    arrived_at_us: int | None = None,
) -> dict[str, str]:
    """What the gateway sends with a request: a signed-in caller (user_id and session_id), or
    none (both None, as on a public route), and the client address it resolved; signed when the
    client sends it. `key`: another one than the deployment's forges. `audience`: another
    service than the client's (a request signed for one service, sent to another)."""
    request_id = request_id or uuid.uuid4().hex
    user = "" if user_id is None else str(user_id)
    role_names = roles_header(roles)
    headers = {REQUEST_ID_HEADER: request_id, CLIENT_IP_HEADER: client_ip,
               IDENTITY_CALLER_HEADER: caller, IDENTITY_SIGNATURE_HEADER: _PENDING,
               SIGN_AT_SEND: json.dumps({"key": key, "timestamp": timestamp,
                                         "audience": audience})}
    if not client_ip:
        del headers[CLIENT_IP_HEADER]
    if user_id is not None:
        headers[USER_ID_HEADER] = user
    if session_id is not None:
        headers[SESSION_ID_HEADER] = session_id
    if role_names:
        headers[USER_ROLES_HEADER] = role_names
    if arrived_at_us is not None:
        headers[ARRIVED_AT_HEADER] = str(arrived_at_us)
    return headers


def sign_request(request: httpx.Request, audience: str) -> None:
    """Replaces what signed_identity_headers left with the signature of this request."""
    pending = request.headers.pop(SIGN_AT_SEND, None)
    if pending is None:
        return
    asked = json.loads(pending)
    headers = request.headers
    request.headers[IDENTITY_SIGNATURE_HEADER] = signer(
        headers[IDENTITY_CALLER_HEADER], asked["key"]).sign(
        audience=asked["audience"] or audience, method=request.method,
        target=request_target(request.url.raw_path, request.url.query), body=request.content,
        user_id=headers.get(USER_ID_HEADER, ""), session_id=headers.get(SESSION_ID_HEADER, ""),
        request_id=headers.get(REQUEST_ID_HEADER, ""),
        client_ip=headers.get(CLIENT_IP_HEADER, ""), roles=headers.get(USER_ROLES_HEADER, ""),
        arrived_at=headers.get(ARRIVED_AT_HEADER, ""), timestamp=asked["timestamp"])


def signed_now(headers: dict[str, str], *, method: str, target: str, body: bytes = b"",
               audience: str) -> dict[str, str]:
    """What signed_identity_headers left, signed at once for this request (for a test that
    drives an ASGI layer itself, or replays what it captured)."""
    request = httpx.Request(method, "http://service" + target, headers=headers, content=body)
    sign_request(request, audience)
    return {name: value for name, value in request.headers.items()
            if name not in ("host", "content-length")}


def changed_after_signing(headers: dict[str, str], changes: dict[str, str], *, method: str,
                          target: str, body: bytes = b"", audience: str) -> dict[str, str]:
    """The attack on a signed request: headers signed for it, then `changes` made on the way."""
    return {**signed_now(headers, method=method, target=target, body=body, audience=audience),
            **{name.lower(): value for name, value in changes.items()}}


def identity_verifier(audience: str) -> IdentityVerifier:
    """What a service built on this run's keys checks signatures with."""
    return IdentityVerifier(parse_public_keys(TEST_IDENTITY_ENVIRONMENT["IDENTITY_PUBLIC_KEYS"]),
                            audience=audience)


def sign_at_send(audience_of: Callable[[httpx.URL], str]
                 ) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx request hook: signs each request the helpers above marked, for the service
    `audience_of(url)` names."""
    async def hook(request: httpx.Request) -> None:
        if SIGN_AT_SEND in request.headers:
            sign_request(request, audience_of(request.url))

    return hook


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


def service_identity_headers(caller: str, key: str = DEPLOYMENT_KEY, *,
                             audience: str | None = None) -> dict[str, str]:
    """What the service `caller` (a package name) signs an internal call with (shared.http): no
    user, no client address, its own key. Internal routes answer only the callers they name."""
    return signed_identity_headers(None, None, key, client_ip="", caller=caller,
                                   audience=audience)
