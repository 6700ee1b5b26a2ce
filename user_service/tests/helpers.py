"""HTTP-side helpers for user_service tests: the app running, accounts made through the API
and logins. (Rows made directly are in factories.py.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt

from shared.testing.apps import RunningApp
from shared.testing.apps import running_app as running
from shared.testing.identity import signed_identity_headers
from shared.testing.mail import MailSink
from user_service.app import create_app
from user_service.settings import Settings
from user_service.tests.factories import PASSWORD, unique_email


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[RunningApp]:
    async with running(create_app(settings), base_url="http://user") as app:
        yield app


async def after_commit_done(app: RunningApp) -> None:
    """Wait until the mail and other side effects of the requests so far have run."""
    await app.resources.datastores.after_commit.drain()


def unique_ip() -> str:
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2]}"


def from_address(ip: str | None) -> dict[str, str]:
    """What the gateway forwards on a public route for a client at `ip` (a new one if None)."""
    return signed_identity_headers(None, None, client_ip=ip or unique_ip())


async def signup(
    client: httpx.AsyncClient, email: str, *, password: str = PASSWORD, ip: str | None = None,
    **fields: Any,
) -> httpx.Response:
    """From a client address of its own unless `ip` says (sign-ups are limited per address)."""
    body = {"email": email, "password": password, "name": "Min-ji", **fields}
    return await client.post("/api/v1/auth/signup", json=body, headers=from_address(ip))


async def verify(
    client: httpx.AsyncClient, email: str, code: str, *, ip: str | None = None,
    token: str | None = None,
) -> httpx.Response:
    """Without `token`, as a client that does not send the sign-up's token."""
    body = {"email": email, "code": code, **({"signup_token": token} if token else {})}
    return await client.post("/api/v1/auth/verify-email", json=body, headers=from_address(ip))


async def resend(client: httpx.AsyncClient, email: str, *, ip: str | None = None) -> httpx.Response:
    return await client.post("/api/v1/auth/verify-email/resend", json={"email": email},
                             headers=from_address(ip))


async def verified_account(
    client: httpx.AsyncClient, mail_sink: MailSink, *, password: str = PASSWORD
) -> str:
    email = unique_email()
    assert (await signup(client, email, password=password)).status_code == 201
    code = (await mail_sink.wait_for(email)).code
    assert (await verify(client, email, code)).status_code == 200
    return email


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, *, ip: str | None = None
) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password},
        headers=from_address(ip),
    )


def identity_headers(access_token: str, *, ip: str = "127.0.0.1") -> dict[str, str]:
    """What the gateway forwards after verifying the token (verification is tested elsewhere)."""
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return signed_identity_headers(int(claims["sub"]), claims["sid"], client_ip=ip)


async def signed_in(
    client: httpx.AsyncClient, mail_sink: MailSink, *, password: str = PASSWORD
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """A verified account and one login: (email, token pair, gateway identity headers)."""
    email = await verified_account(client, mail_sink, password=password)
    response = await login(client, email, password)
    assert response.status_code == 200
    tokens = response.json()
    return email, tokens, identity_headers(tokens["access_token"])
