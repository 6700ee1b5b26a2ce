"""The identity the gateway forwards: services believe it only under the gateway's signature, and
accept only well-formed user and session ids."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from shared.contracts import IDENTITY_MAX_AGE_SECONDS, identity_signature
from shared.errors import install_error_handlers
from shared.identity import IDENTITY_KEY_STATE, ClientIp, CurrentSession, CurrentUser
from shared.testing.apps import running_app
from shared.testing.identity import TEST_IDENTITY_SIGNING_KEY, signed_identity_headers

SID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        yield {IDENTITY_KEY_STATE: TEST_IDENTITY_SIGNING_KEY.encode()}

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)

    @app.get("/whoami")
    async def whoami(user_id: CurrentUser, session_id: CurrentSession) -> dict[str, object]:
        return {"user_id": user_id, "session_id": session_id}

    @app.get("/where")
    async def where(client_ip: ClientIp) -> dict[str, str]:
        return {"client_ip": client_ip}

    async with running_app(app) as running:
        yield running.client


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
    headers: dict[str, str | bytes] = {**signed_identity_headers(42, SID, client_ip="10.0.0.1")}
    headers[field] = {"X-User-Id": "43", "X-Session-Id": "f" * 32,
                      "X-Request-Id": "another-request", "X-Forwarded-For": "10.0.0.2"}[field]
    await _refused(client, headers)


async def test_a_signature_with_another_key_is_refused(client: httpx.AsyncClient) -> None:
    await _refused(client, {**signed_identity_headers(42, SID, "not-the-key-" * 4)})


@pytest.mark.parametrize("age", [IDENTITY_MAX_AGE_SECONDS + 2, -IDENTITY_MAX_AGE_SECONDS - 2])
async def test_a_signature_from_another_time_is_refused(client: httpx.AsyncClient,
                                                        age: int) -> None:
    # A captured request cannot be replayed later (nor one signed ahead of time).
    stale = signed_identity_headers(42, SID, timestamp=int(time.time()) - age)
    await _refused(client, {**stale})


@pytest.mark.parametrize("signature", ["", "v1", "v1.x.y", "v2.1.00", "v1.1." + "g" * 64,
                                       "v1." + "9" * 5000 + "." + "0" * 64])
async def test_a_malformed_signature_is_refused(client: httpx.AsyncClient,
                                                signature: str) -> None:
    await _refused(client, {**signed_identity_headers(42, SID), "X-Identity-Signature": signature})


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
                                       "X-Forwarded-For": "10.0.0.1"}
    headers["X-Identity-Signature"] = identity_signature(
        TEST_IDENTITY_SIGNING_KEY.encode(), timestamp=int(time.time()), user_id=raw_user,
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
    forged = {**signed_identity_headers(None, None, client_ip="10.1.2.3"),
              "X-Forwarded-For": "10.9.9.9"}
    assert (await client.get("/where", headers=forged)).status_code == 401
