"""HTTP-side helpers for social_service tests: every page of a list. (Rows made directly are in
factories.py; identities and problem checks come from shared.testing.)"""

from __future__ import annotations

from typing import Any

import httpx

from shared.testing.identity import identity_headers


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
