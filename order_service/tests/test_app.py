"""order_service answers health and readiness against its real, migrated schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from order_service.app import create_app
from order_service.settings import Settings
from shared.testing.datastores import fresh_database
from shared.testing.routes import thread_pool_dependencies


@pytest.fixture(scope="module")
def database_url() -> str:
    return fresh_database("order_service", "preorder_order")


@pytest.fixture(scope="module")
async def client(database_url: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=database_url, redis_url=redis_url)
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as c:
            yield c


async def test_healthz_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_database_and_redis(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == ["database", "redis"]


async def test_unknown_path_is_problem_json_with_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here", headers={"X-Request-Id": "test-req-0001"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "test-req-0001"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["request_id"] == "test-req-0001"


async def test_readyz_fails_when_database_is_unreachable(redis_url: str) -> None:
    # Port 9 on loopback has no MySQL: readiness must say so instead of hanging or claiming ready.
    settings = Settings(database_url="mysql+asyncmy://root@127.0.0.1:9/preorder_order",
                        redis_url=redis_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://order") as c:
            response = await c.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]


def test_no_route_resolves_dependencies_in_a_worker_thread() -> None:
    assert thread_pool_dependencies(create_app(Settings())) == []
