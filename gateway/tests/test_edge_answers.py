"""Answers a service published for the edge (shared/edge_answers.py): given by the gateway
without forwarding while in force, forgotten when withdrawn or expired, learnt at start."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from gateway import app as gateway_app
from gateway.app import create_app
from gateway.runtime import GatewayRuntime
from gateway.tests.conftest import Rig, gateway_settings
from shared.broadcast import Channels
from shared.edge_answers import (
    ANSWERS_TOPIC,
    Answer,
    RequestShape,
    answer_key,
    answer_message,
)
from shared.in_order import InOrderConnector
from shared.testing.net import ThreadedServer

ROUTE = "POST /api/v1/orders"
SHAPE = RequestShape(key_field="product_id",
                     int_fields={"product_id": (1, 2**53 - 1), "quantity": (1, 100)},
                     unless_headers=frozenset({b"idempotency-key"}))
SOLD_OUT = Answer(409, "sold_out", "Sold out", "Sold out")


@pytest.fixture
def product_id() -> int:
    return uuid.uuid4().int % 10**12 + 1


async def publish(redis: Redis, rig: Rig, product_id: int, *, ttl_ms: int | None = 5000,
                  withdraw: bool = False) -> None:
    prefix = rig.settings.pubsub_prefix
    key = answer_key(prefix, f"{{p:{product_id}}}", ROUTE, str(product_id))
    if withdraw:
        message = answer_message(ROUTE, str(product_id), None)
        await redis.delete(key)
    else:
        message = answer_message(ROUTE, str(product_id), SOLD_OUT, SHAPE, ttl_ms=ttl_ms)
        await redis.set(key, message, px=ttl_ms)
    await redis.publish(Channels(prefix).name(ANSWERS_TOPIC), message)


async def order(client: httpx.AsyncClient, rig: Rig, product_id: int, *,
                headers: dict[str, str] | None = None, quantity: int = 1) -> httpx.Response:
    return await client.post("/api/v1/orders", json={"product_id": product_id,
                                                     "quantity": quantity},
                             headers={"Authorization": f"Bearer {rig.token()}",
                                      **(headers or {})})


def forwarded(response: httpx.Response) -> bool:
    return bool(response.headers.get("x-upstream") == "order")


async def until(check: object, timeout: float = 2.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_an_answer_in_force_is_given_without_forwarding_until_withdrawn(
        client: httpx.AsyncClient, rig: Rig, redis: Redis, product_id: int) -> None:
    assert forwarded(await order(client, rig, product_id))
    await publish(redis, rig, product_id)

    async def answered() -> bool:
        return not forwarded(await order(client, rig, product_id))

    await until(answered)
    response = await order(client, rig, product_id)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["title"], body["status"]) == ("sold_out", "Sold out", 409)
    assert body["request_id"] == response.headers["x-request-id"]
    # Another product, a keyed retry, a body the route would refuse: forwarded.
    assert forwarded(await order(client, rig, product_id + 1))
    assert forwarded(await order(client, rig, product_id, headers={"Idempotency-Key": "k1"}))
    assert forwarded(await order(client, rig, product_id, quantity=0))
    # Without a valid token the answer is still the gateway's 401.
    anonymous = await client.post("/api/v1/orders", json={"product_id": product_id,
                                                          "quantity": 1})
    assert anonymous.status_code == 401
    await publish(redis, rig, product_id, withdraw=True)

    async def forwarded_again() -> bool:
        return forwarded(await order(client, rig, product_id))

    await until(forwarded_again)


async def test_an_answer_lapses_at_its_expiry(client: httpx.AsyncClient, rig: Rig,
                                              redis: Redis, product_id: int) -> None:
    await publish(redis, rig, product_id, ttl_ms=400)

    async def answered() -> bool:
        return not forwarded(await order(client, rig, product_id))

    await until(answered)
    await asyncio.sleep(0.45)
    assert forwarded(await order(client, rig, product_id))


@pytest.fixture
def second_gateway(rig: Rig, redis_url: str) -> ThreadedServer:
    return ThreadedServer(create_app(gateway_settings(
        {n: s.url for n, s in rig.upstreams.items()}, redis_url)))


async def test_a_gateway_that_starts_learns_the_answers_in_force(
        rig: Rig, redis: Redis, product_id: int, second_gateway: ThreadedServer) -> None:
    await publish(redis, rig, product_id, ttl_ms=10_000)
    second_gateway.start()
    try:
        async with httpx.AsyncClient(base_url=second_gateway.url, timeout=5) as http:
            response = await order(http, rig, product_id)
            assert response.status_code == 409
            assert not forwarded(response)
    finally:
        second_gateway.stop()


async def test_a_request_waiting_for_a_connection_when_the_answer_comes_is_answered_at_once(
        rig: Rig, redis: Redis, redis_url: str, product_id: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At an opening the crowd waits at the gateway for order_service's connections: a request
    that passed the edge before the product sold out, and still waits when the answer is heard,
    is answered here as the answer is heard, not sent, and without waiting for a connection."""
    runtimes: list[GatewayRuntime] = []

    class Recorded(GatewayRuntime):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            runtimes.append(self)

    monkeypatch.setattr(gateway_app, "GatewayRuntime", Recorded)
    release = threading.Event()
    reached: list[int] = []

    async def orders(request: Request) -> Response:
        reached.append((await request.json())["product_id"])
        if len(reached) == 1:
            await asyncio.to_thread(release.wait, 10)
        return JSONResponse({"id": len(reached)}, status_code=201)

    upstream = ThreadedServer(Starlette(routes=[
        StarletteRoute("/api/v1/orders", orders, methods=["POST"])])).start()
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    upstreams["order"] = upstream.url
    server = ThreadedServer(create_app(gateway_settings(
        upstreams, redis_url, max_connections_per_upstream=1))).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            first = asyncio.create_task(order(c, rig, product_id))
            await until(lambda: asyncio.sleep(0, bool(reached)))
            waiting = asyncio.create_task(order(c, rig, product_id))
            [runtime] = runtimes
            connector = runtime.upstreams.sessions["order"].connector
            assert isinstance(connector, InOrderConnector)

            async def waits_for_the_connection() -> bool:
                return connector.looking == 1

            # Past the edge, waiting for the one connection.
            await until(waits_for_the_connection)
            assert not waiting.done()
            await publish(redis, rig, product_id)

            async def heard() -> bool:
                return runtime.edge_answers.answer_for(
                    ROUTE, [(b"content-type", b"application/json")],
                    json.dumps({"product_id": product_id, "quantity": 1}).encode()) is not None

            await until(heard)
            answer = await asyncio.wait_for(waiting, 2)
            assert not first.done()  # the one connection still busy
            release.set()
            assert (await first).status_code == 201
    finally:
        release.set()
        server.stop()
        upstream.stop()
    assert answer.status_code == 409
    assert answer.json()["code"] == "sold_out"
    assert answer.headers["content-type"] == "application/problem+json"
    assert reached == [product_id]
