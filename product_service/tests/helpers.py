"""HTTP-side helpers for product_service tests: the caller's identity headers, problem+json
assertions, and product bodies. (Rows made directly are in products/factories.py.)"""

from __future__ import annotations

import itertools
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.testing.identity import signed_identity_headers

# Ids of users the tests make up (product_service never asks user_service), never the same
# twice in one run.
_user_ids = itertools.count(random.randrange(10**12, 2 * 10**12), random.randrange(1, 1000))


def new_user_id() -> int:
    return next(_user_ids)


def identity_headers(user_id: int) -> dict[str, str]:
    """What the gateway forwards for a signed-in user, signed as the gateway signs it. The one
    place tests build identity, so a change in how services trust the gateway is a change here
    only."""
    return signed_identity_headers(user_id, secrets.token_hex(16))


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def in_(**delta: float) -> str:
    """A time from now, as a client sends it."""
    return iso(datetime.now(UTC) + timedelta(**delta))


def product_body(**fields: Any) -> dict[str, Any]:
    """A valid creation body (a preorder opening in a day), with `fields` changed."""
    body: dict[str, Any] = {"name": "Keyboard", "description": "Tactile, 75%", "price": 129_000,
                            "stock": 30, "kind": "preorder", "sale_opens_at": in_(days=1)}
    body.update(fields)
    return body


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


async def create_product(client: httpx.AsyncClient, seller_id: int,
                         **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/products", json=product_body(**fields),
                                 headers=identity_headers(seller_id))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
