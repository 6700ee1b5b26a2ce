"""Every error leaves as problem+json with a stable code, including FastAPI's own errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from shared.errors import Conflict, TooManyRequests, install_error_handlers
from shared.middleware import RequestFrameMiddleware
from shared.testing.datastores import TEST_MYSQL_URL
from shared.testing.net import free_port
from shared.testing.problems import assert_problem as assert_shared_problem


class SoldOut(Conflict):
    code = "sold_out"
    title = "Sold out"


class Body(BaseModel):
    quantity: int


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestFrameMiddleware)

    @app.post("/orders")
    async def create(body: Body) -> dict[str, int]:
        if body.quantity > 3:
            raise SoldOut("Only 3 left.")
        return {"quantity": body.quantity}

    @app.get("/limited")
    async def limited() -> None:
        raise TooManyRequests("Slow down.", retry_after=7)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/redis-down")
    async def redis_down() -> None:
        # A real client against a port nobody listens on: what a request meets while Redis
        # restarts.
        redis = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
        try:
            await redis.get("anything")
        finally:
            await redis.aclose()

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The shared check, and the body names the request the response answers (no replays
    here)."""
    body = assert_shared_problem(response, status, code)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_typed_error(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/orders", json={"quantity": 5}), 409, "sold_out")
    assert body["detail"] == "Only 3 left."
    assert body["title"] == "Sold out"


async def test_validation_error_lists_fields(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/orders", json={"quantity": "many"}), 422,
                          "validation_error")
    assert body["errors"] == [{"loc": ["body", "quantity"], "msg": body["errors"][0]["msg"]}]


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", content=b'{"quantity": ',
                                 headers={"content-type": "application/json"})
    assert_problem(response, 422, "validation_error")


async def test_routing_errors(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nowhere"), 404, "not_found")
    assert_problem(await client.get("/orders"), 405, "method_not_allowed")


async def test_rate_limit_carries_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.get("/limited")
    assert_problem(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "7"


async def test_unexpected_error_is_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    assert body["detail"] == "The server could not complete the request."


async def test_redis_out_of_reach_is_a_503_to_retry_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/redis-down")
    body = assert_problem(response, 503, "upstream_unavailable")
    assert response.headers["retry-after"] == "1"
    assert "127.0.0.1" not in body["detail"]


async def test_undecodable_body_is_a_validation_error(client: httpx.AsyncClient) -> None:
    # Not UTF-8 at all: FastAPI's own answer would be a 400 the contract does not list.
    response = await client.post("/orders", content=b"\x0f\xff\xfe",
                                 headers={"content-type": "application/json"})
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"] == [{"loc": ["body"], "msg": "The body is not valid JSON."}]


async def test_a_500_keeps_the_connection_open_for_the_next_request() -> None:
    # The gateway pools its connections to a service. When the unexpected error was re-raised
    # to uvicorn after the 500 was sent, uvicorn closed the connection, and the next request
    # the gateway sent on it (another client's order, say) failed as a 502.
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(), host="127.0.0.1", port=port,
                                           log_level="critical", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET /%s HTTP/1.1\r\nHost: test\r\n\r\n"
        writer.write(request % b"boom")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500 ")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        await reader.readexactly(length)
        writer.write(request % b"limited")
        following = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert following.startswith(b"HTTP/1.1 429 ")
        writer.close()
    finally:
        server.should_exit = True
        await serving


async def test_a_405_allows_every_method_the_path_takes() -> None:
    # FastAPI makes one route per method: Starlette's own Allow named only the first route
    # that matched the path, so `OPTIONS /things/1` said `Allow: GET` though DELETE works too.
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things/{thing_id}")
    async def read(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @app.delete("/things/{thing_id}", status_code=204)
    async def remove(thing_id: int) -> None:
        return None

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        response = await client.options("/things/1")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"] == "DELETE, GET"


async def test_no_database_connection_free_in_time_is_a_503_to_retry_not_a_500() -> None:
    """Every connection of the pool busy for longer than the pool waits (a crowd on two
    cores): the request could not be decided, and is answered as when the database is out of
    reach. It was a 500 (payment_service's webhook, in a 20,000-buyer make load)."""
    engine = create_async_engine(TEST_MYSQL_URL, pool_size=1, max_overflow=0, pool_timeout=0.2)
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestFrameMiddleware)

    @app.get("/busy")
    async def busy() -> None:
        async with engine.connect(), engine.connect():
            pass

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/busy")
    finally:
        await engine.dispose()
    assert_problem(response, 503, "upstream_unavailable")
    assert response.headers["retry-after"] == "1"
