"""HTTP-side helpers for social_service tests: the caller's identity headers and problem+json
assertions. (Rows made directly are in factories.py.)"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from shared.testing.identity import signed_identity_headers


def identity_headers(user_id: int) -> dict[str, str]:
    """What the gateway forwards for a signed-in user, signed as the gateway signs it. The one
    place tests build identity, so a change in how services trust the gateway is a change here
    only."""
    return signed_identity_headers(user_id, secrets.token_hex(16))


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


async def all_pages(client: httpx.AsyncClient, url: str, user_id: int, *, limit: int,
                    **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a list, following next_cursor to the end."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=query, headers=identity_headers(user_id))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
