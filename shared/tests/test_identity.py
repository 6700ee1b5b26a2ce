"""The identity the gateway forwards: services accept only well-formed user and session ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from shared.errors import install_error_handlers
from shared.identity import CurrentSession, CurrentUser

SID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/whoami")
    async def whoami(user_id: CurrentUser, session_id: CurrentSession) -> dict[str, object]:
        return {"user_id": user_id, "session_id": session_id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as c:
        yield c


async def test_well_formed_identity_is_passed_on(client: httpx.AsyncClient) -> None:
    response = await client.get("/whoami", headers={"X-User-Id": "42", "X-Session-Id": SID})
    assert response.status_code == 200
    assert response.json() == {"user_id": 42, "session_id": SID}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Session-Id": SID},
        {"X-User-Id": "0", "X-Session-Id": SID},
        {"X-User-Id": str(2**53), "X-Session-Id": SID},
        {"X-User-Id": "²".encode(), "X-Session-Id": SID},  # a digit to str.isdigit(), not to int()
        {"X-User-Id": "1" * 5000, "X-Session-Id": SID},
        {"X-User-Id": "42"},
        {"X-User-Id": "42", "X-Session-Id": SID.upper()},
        {"X-User-Id": "42", "X-Session-Id": SID + "\n"},
        {"X-User-Id": "42", "X-Session-Id": SID[:-1]},
    ],
)
async def test_missing_or_malformed_identity_is_401(
    client: httpx.AsyncClient, headers: dict[str, str | bytes]
) -> None:
    raw = [(name.encode(), value if isinstance(value, bytes) else value.encode())
           for name, value in headers.items()]
    response = await client.get("/whoami", headers=raw)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "missing_token"
