"""The Idempotency-Key header as documented in OpenAPI and as checked: a client (or a fuzzer)
that follows the document never sends a key the route refuses, and vice versa."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.errors import install_error_handlers
from shared.idempotency import HEADER, IdempotencyKeyDep


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/orders")
    async def create(key: IdempotencyKeyDep) -> dict[str, str | None]:
        return {"key": key}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def documented_header(document: dict[str, Any]) -> dict[str, Any]:
    parameters = document["paths"]["/orders"]["post"]["parameters"]
    schema: dict[str, Any] = next(p for p in parameters if p["name"] == HEADER)["schema"]
    return schema


@pytest.mark.parametrize("key", ["k", "retry-7f3a", "a" * 255, "a" * 256, "with space", "a\tb",
                                 "a\x7fb", "~!@#$%^&*()_+{}|:<>?"])
async def test_the_documented_pattern_admits_exactly_the_keys_the_route_takes(
    client: httpx.AsyncClient, key: str
) -> None:
    schema = documented_header((await client.get("/openapi.json")).json())
    documented = (len(key) <= schema["maxLength"]
                  and re.fullmatch(schema["pattern"].strip("^$"), key) is not None)
    response = await client.post("/orders", headers={HEADER: key})
    assert response.status_code == (200 if documented else 422), response.text
