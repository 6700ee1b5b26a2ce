"""The identity the gateway forwards: services believe it only under a signature bound to the
request it came with (method, path and query, body, the service addressed, a nonce, its age at
arrival) made with a key the deployment lists for the caller it names; and they accept only
well-formed user and session ids. Each attack is sent as an attacker would and seen refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.contracts import IDENTITY_MAX_AGE_SECONDS, NOT_READ_HEADER
from shared.errors import install_error_handlers
from shared.identity import (
    IDENTITY_VERIFIER_STATE,
    ClientIp,
    CurrentSession,
    CurrentUser,
    IdentityCheck,
    SignedIdentity,
)
from shared.identity_keys import IdentitySigner, IdentityVerifier, parse_public_keys
from shared.testing.apps import running_app
from shared.testing.identity import (
    TEST_IDENTITY_ENVIRONMENT,
    TEST_IDENTITY_KEYS,
    service_identity_headers,
    sign_request,
    signed_identity_headers,
)

SID = "0123456789abcdef0123456789abcdef"
AUDIENCE = "order_service"
# How long the slow route keeps a request waiting before it reads the identity.
SLOW_SECONDS = 2.5


class _Slow:
    """In front of the router, as a busy service's queue is: /slow waits before going on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/slow":
            await asyncio.sleep(SLOW_SECONDS)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        keys = parse_public_keys(TEST_IDENTITY_ENVIRONMENT["IDENTITY_PUBLIC_KEYS"])
        yield {IDENTITY_VERIFIER_STATE: IdentityVerifier(keys, audience=AUDIENCE)}

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)

    @app.get("/whoami")
    async def whoami(user_id: CurrentUser, session_id: CurrentSession) -> dict[str, object]:
        return {"user_id": user_id, "session_id": session_id}

    @app.get("/slow")
    async def slow(user_id: CurrentUser) -> dict[str, object]:
        return {"user_id": user_id}

    @app.get("/orders/{order_id}")
    async def order(order_id: int, user_id: CurrentUser) -> dict[str, object]:
        return {"order_id": order_id, "user_id": user_id}

    @app.post("/orders/{order_id}/cancel")
    async def cancel(order_id: int, user_id: CurrentUser, request: Request) -> dict[str, object]:
        return {"cancelled": order_id, "user_id": user_id, "body": (await request.body()).decode()}

    @app.get("/caller")
    async def caller(identity: SignedIdentity) -> dict[str, object]:
        return {"caller": identity.caller if identity else None}

    @app.get("/where")
    async def where(client_ip: ClientIp) -> dict[str, str]:
        return {"client_ip": client_ip}

    app.add_middleware(_Slow)
    app.add_middleware(IdentityCheck)
    async with running_app(app) as running:
        yield running.client


async def _captured(client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str],
                    *, content: bytes | None = None, audience: str = AUDIENCE
                    ) -> tuple[httpx.Response, dict[str, str]]:
    """Sends a signed request as the gateway would, and returns what a listener on the wire
    captured of it: the answer and the headers as sent."""
    request = client.build_request(method, url, headers=headers, content=content)
    sign_request(request, audience)
    sent = dict(request.headers)
    return await client.send(request), sent


def _signed_for(client: httpx.AsyncClient, method: str, url: str,
                headers: dict[str, str]) -> dict[str, str]:
    """The headers signed for this request now (to be tampered with before sending)."""
    request = client.build_request(method, url, headers=headers)
    sign_request(request, AUDIENCE)
    return _replayable(dict(request.headers))


def _replayable(headers: dict[str, str]) -> dict[str, str]:
    # httpx recomputes these for the replayed request.
    return {k: v for k, v in headers.items() if k.lower() not in ("content-length", "host")}


def _raw(headers: dict[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value if isinstance(value, bytes) else value.encode())
            for name, value in headers.items()]


async def test_a_signed_identity_is_passed_on(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers=signed_identity_headers(42, SID))
    assert response.status_code == 200
    assert response.json() == {"user_id": 42, "session_id": SID}


async def _refused(client: httpx.AsyncClient, headers: dict[str, str | bytes]) -> None:
    response = await client.get("/whoami", headers=_raw(headers))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "missing_token"


async def test_an_unsigned_identity_is_refused(client: httpx.AsyncClient) -> None:
    # What any process that reaches the service's port could send.
    await _refused(client, {"X-User-Id": "42", "X-Session-Id": SID})


@pytest.mark.parametrize("field", ["X-User-Id", "X-Session-Id", "X-Request-Id",
                                   "X-Forwarded-For"])
async def test_a_signature_of_other_headers_is_refused(
    client: httpx.AsyncClient, field: str
) -> None:
    headers: dict[str, str | bytes] = {**_signed_for(
        client, "GET", "/whoami", signed_identity_headers(42, SID, client_ip="10.0.0.1"))}
    headers[field.lower()] = {"X-User-Id": "43", "X-Session-Id": "f" * 32,
                      "X-Request-Id": "another-request", "X-Forwarded-For": "10.0.0.2"}[field]
    await _refused(client, headers)


async def test_a_signature_with_another_key_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers=signed_identity_headers(42, SID, "forger"))
    assert response.status_code == 401


async def test_a_signed_query_is_believed(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders/7", params={"x": "1 2", "y": "é"},
                                headers=signed_identity_headers(42, SID))
    assert response.status_code == 200, response.text


async def test_replaying_a_get_as_a_cancel_is_refused(client: httpx.AsyncClient) -> None:
    """The attack: a user's captured GET headers, replayed as POST .../cancel within the 10 s."""
    answer, captured = await _captured(client, "GET", "/orders/7",
                                       signed_identity_headers(42, SID))
    assert answer.status_code == 200
    replayed = await client.post("/orders/7/cancel", headers=_replayable(captured))
    assert replayed.status_code == 401, replayed.text
    # Nor on another path with the same method, nor with another query.
    assert (await client.get("/orders/8", headers=_replayable(captured))).status_code == 401
    assert (await client.get("/orders/7?x=1", headers=_replayable(captured))).status_code == 401


async def test_a_swapped_body_is_refused(client: httpx.AsyncClient) -> None:
    request = client.build_request("POST", "/orders/7/cancel", content=b'{"reason":"mine"}',
                                   headers=signed_identity_headers(42, SID))
    sign_request(request, AUDIENCE)
    swapped = await client.post("/orders/7/cancel", content=b'{"reason":"theirs"}',
                                headers=_replayable(dict(request.headers)))
    assert swapped.status_code == 401, swapped.text
    answer = await client.send(request)  # the request as signed still goes through
    assert answer.status_code == 200
    assert answer.json()["body"] == '{"reason":"mine"}'


async def test_a_signature_for_another_service_is_refused(client: httpx.AsyncClient) -> None:
    """The attack: a request the gateway signed for payment_service, sent to this service."""
    answer, _ = await _captured(client, "GET", "/orders/7", signed_identity_headers(42, SID),
                                audience="payment_service")
    assert answer.status_code == 401


async def test_a_nonce_is_accepted_once(client: httpx.AsyncClient) -> None:
    """The attack: the very same request (method, path, body and all) sent again."""
    answer, captured = await _captured(client, "GET", "/orders/7",
                                       signed_identity_headers(42, SID))
    assert answer.status_code == 200
    again = await client.get("/orders/7", headers=_replayable(captured))
    assert again.status_code == 401, again.text


async def test_a_service_cannot_sign_as_the_gateway_or_another_service(
    client: httpx.AsyncClient,
) -> None:
    """The attack: a compromised service (it holds its own private key, and every public key)
    names another caller. Its key is listed for itself only."""
    own = IdentitySigner("product_service", TEST_IDENTITY_KEYS["product_service"])
    for pose_as in ("gateway", "order_service"):
        forged = service_identity_headers(pose_as)
        forged.pop("X-Test-Sign-At-Send")
        forged["X-Identity-Signature"] = IdentitySigner(pose_as, own._key).sign(
            audience=AUDIENCE, method="GET", target="/caller", body=b"",
            request_id=forged["X-Request-Id"])
        response = await client.get("/caller", headers=forged)
        assert response.status_code == 401, (pose_as, response.text)
    # Signing as itself, with its own key, it is who it says.
    honest = await client.get("/caller", headers=service_identity_headers("product_service"))
    assert honest.json() == {"caller": "product_service"}


async def test_an_honest_request_that_waits_in_the_service_is_not_refused(
    client: httpx.AsyncClient,
) -> None:
    """Under overload a request waits inside a service; its signature's age is counted to its
    arrival, so a request signed in time is answered however long it then waits."""
    nearly_stale = int(time.time()) - IDENTITY_MAX_AGE_SECONDS + 1
    response = await client.get("/slow", headers=signed_identity_headers(
        42, SID, timestamp=nearly_stale))
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": 42}


async def test_a_signature_from_the_future_is_refused(client: httpx.AsyncClient) -> None:
    # One signed ahead of time cannot be kept for later.
    ahead = signed_identity_headers(
        42, SID, timestamp=int(time.time()) + IDENTITY_MAX_AGE_SECONDS + 2)
    await _refused(client, {**ahead})


async def test_a_request_that_aged_on_its_way_is_unavailable_never_unauthorized(
    client: httpx.AsyncClient,
) -> None:
    """A genuine signature that aged past its bound before the service read the request (a
    request that sat in a socket backlog under overload, or a captured one replayed later) is
    not executed; but the caller's token was good, so the answer is the retryable 503 the
    contract gives a slow service, never a 401 that tells a client to sign in again."""
    long_ago = int(time.time()) - IDENTITY_MAX_AGE_SECONDS - 2
    aged = signed_identity_headers(42, SID, timestamp=long_ago)
    response = await client.get("/whoami", headers=_raw({**aged}))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "upstream_unavailable"
    assert response.headers["Retry-After"] == "1"
    # Marked unread, so the sender may send it again signed anew, whatever its method.
    assert response.headers[NOT_READ_HEADER] == "aged"


async def test_an_aged_forgery_is_still_unauthorized(client: httpx.AsyncClient) -> None:
    # Only a signature that checks out is told it is merely late: an aged one with its headers
    # changed, or made with a key the deployment never listed, stays a 401.
    long_ago = int(time.time()) - IDENTITY_MAX_AGE_SECONDS - 2
    changed: dict[str, str | bytes] = {**_signed_for(
        client, "GET", "/whoami", signed_identity_headers(42, SID, timestamp=long_ago))}
    changed["x-user-id"] = "43"
    await _refused(client, changed)
    await _refused(client, {**signed_identity_headers(42, SID, "forger", timestamp=long_ago)})


@pytest.mark.parametrize("signature", ["", "v1", "v1.x.y", "v2.1.00", "v1.1." + "g" * 64,
                                       "v1." + "9" * 5000 + "." + "0" * 64,
                                       "v2." + "0" * 16 + ".1." + "n" * 16 + "." + "A" * 85,
                                       "v2." + "0" * 16 + ".1." + "n" * 16 + "." + "=" * 86])
async def test_a_malformed_signature_is_refused(client: httpx.AsyncClient,
                                                signature: str) -> None:
    headers = signed_identity_headers(42, SID)
    headers.pop("X-Test-Sign-At-Send")
    await _refused(client, {**headers, "X-Identity-Signature": signature})


@pytest.mark.parametrize(
    ("user_id", "session_id"),
    [
        ("", SID),
        ("0", SID),
        (str(2**53), SID),
        ("²".encode("latin-1"), SID),  # a digit to str.isdigit(), not to int()
        ("1" * 5000, SID),
        ("42", ""),
        ("42", SID.upper()),
        ("42", SID[:-1]),
    ],
)
async def test_a_malformed_identity_is_401_even_signed(
    client: httpx.AsyncClient, user_id: str | bytes, session_id: str
) -> None:
    raw_user = user_id.decode("latin-1") if isinstance(user_id, bytes) else user_id
    headers: dict[str, str | bytes] = {"X-Request-Id": "req-00000001",
                                       "X-Forwarded-For": "10.0.0.1",
                                       "X-Identity-Caller": "gateway"}
    headers["X-Identity-Signature"] = IdentitySigner(
        "gateway", TEST_IDENTITY_KEYS["gateway"]).sign(
        audience=AUDIENCE, method="GET", target="/whoami", body=b"", user_id=raw_user,
        session_id=session_id, request_id="req-00000001", client_ip="10.0.0.1")
    if user_id:
        headers["X-User-Id"] = user_id
    if session_id:
        headers["X-Session-Id"] = session_id
    await _refused(client, headers)


async def test_the_client_address_is_the_signed_one_or_the_peer(
    client: httpx.AsyncClient,
) -> None:
    signed = await client.get("/where", headers=signed_identity_headers(None, None,
                                                                        client_ip="10.1.2.3"))
    assert signed.json() == {"client_ip": "10.1.2.3"}
    # Unsigned, X-Forwarded-For is anyone's claim: the socket peer is the client.
    unsigned = await client.get("/where", headers={"X-Forwarded-For": "10.1.2.3"})
    assert unsigned.json() == {"client_ip": "127.0.0.1"}
    forged = {**_signed_for(client, "GET", "/where",
                            signed_identity_headers(None, None, client_ip="10.1.2.3")),
              "x-forwarded-for": "10.9.9.9"}
    assert (await client.get("/where", headers=forged)).status_code == 401
