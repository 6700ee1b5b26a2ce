"""HTTP-side helpers for product_service tests: product bodies and products made through the
API. (Rows made directly are in products/factories.py; identities and problem checks come from
shared.testing.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.testing.identity import seller_headers


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


async def create_product(client: httpx.AsyncClient, seller_id: int,
                         **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/products", json=product_body(**fields),
                                 headers=seller_headers(seller_id))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
