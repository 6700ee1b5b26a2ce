"""Streamed routes (/live): relayed as they come, never cut by the upstream timeout, in a pool
of their own so open streams never starve ordinary requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx

from gateway.app import create_app
from gateway.routes import RouteTable
from gateway.tests.conftest import Rig, gateway_settings
from shared.testing.net import ThreadedServer

LIVE = "/api/v1/products/7/live"


def test_the_live_route_is_stock_services_public_stream() -> None:
    match = RouteTable().match("GET", LIVE)
    assert match is not None
    assert (match.route.service, match.public, match.route.stream) == ("stock", True, True)


async def first_lines(response: httpx.Response, count: int) -> AsyncIterator[tuple[float, str]]:
    seen = 0
    async for line in response.aiter_lines():
        if line:
            yield time.monotonic(), line
            seen += 1
            if seen == count:
                return


async def test_events_are_relayed_as_they_come(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    async with client.stream("GET", LIVE, params={"gap": "1.0"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in response.headers
        lines = [item async for item in first_lines(response, 4)]
    (first_at, first), _, (second_at, _), (_, second) = lines
    assert first == "id: 1"
    assert second == 'data: {"n":2}'
    assert first_at - started < 0.8, "the first event waited for the second"
    assert second_at - first_at >= 0.9


async def test_a_stream_outlives_the_upstream_timeout(client: httpx.AsyncClient,
                                                      rig: Rig) -> None:
    gap = rig.settings.upstream_timeout_seconds + 0.5
    async with client.stream("GET", LIVE, params={"gap": str(gap)}) as response:
        body = await response.aread()
    assert b'data: {"n":2}' in body


async def test_open_streams_take_no_connection_ordinary_requests_need(
        redis_url: str, rig: Rig) -> None:
    settings = gateway_settings({n: s.url for n, s in rig.upstreams.items()}, redis_url,
                                max_connections_per_upstream=2)
    gateway = ThreadedServer(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as http:
            streams = [http.stream("GET", LIVE, params={"gap": "3"}) for _ in range(6)]
            opened = [await stream.__aenter__() for stream in streams]
            try:
                assert all(response.status_code == 200 for response in opened)
                ordinary = await asyncio.wait_for(http.get("/api/v1/products/7/stock"), 2)
                assert ordinary.status_code == 200
                assert ordinary.json()["service"] == "stock"
            finally:
                for stream in streams:
                    await stream.__aexit__(None, None, None)
    finally:
        gateway.stop()


async def test_streams_past_the_limit_are_refused_quickly(redis_url: str, rig: Rig) -> None:
    settings = gateway_settings({n: s.url for n, s in rig.upstreams.items()}, redis_url,
                                max_open_streams=1)
    gateway = ThreadedServer(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as http:
            async with http.stream("GET", LIVE, params={"gap": "2"}) as open_one:
                assert open_one.status_code == 200
                refused = await http.get(LIVE)
                assert refused.status_code == 503
                assert refused.headers["retry-after"]
            await asyncio.sleep(0.1)
            async with http.stream("GET", LIVE, params={"gap": "0"}) as again:
                assert again.status_code == 200
    finally:
        gateway.stop()


async def test_long_polls_take_no_connection_ordinary_requests_need(
        redis_url: str, rig: Rig) -> None:
    """A ticket's `?wait=` is held by its service for up to 25 s, as a stream is: with them on
    the ordinary pool, that many buyers waiting on their tickets would leave no connection for
    anyone's order."""
    settings = gateway_settings({n: s.url for n, s in rig.upstreams.items()}, redis_url,
                                max_connections_per_upstream=2,
                                max_held_connections_per_upstream=2)
    gateway = ThreadedServer(create_app(settings)).start()
    headers = {"Authorization": f"Bearer {rig.token()}"}
    polls: list[asyncio.Task[httpx.Response]] = []
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            polls += [asyncio.create_task(http.get("/api/v1/orders/tickets/held-poll",
                                                  params={"wait": "3"}, headers=headers))
                     for _ in range(4)]
            await asyncio.sleep(0.3)
            ordinary = await asyncio.wait_for(
                http.post("/api/v1/orders", json={"product_id": 1, "quantity": 1},
                          headers=headers), 2)
            assert ordinary.status_code == 200
            assert ordinary.json()["service"] == "order"
            assert [(await poll).status_code for poll in polls] == [200] * 4
    finally:
        for poll in polls:
            poll.cancel()
        gateway.stop()
