"""The gateway's sale metrics on its internal listener: answers given at the edge, rate-limited
refusals (both by route template), the live streams open right now, and Redis reachable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.tests.conftest import Rig, gateway_settings
from gateway.tests.test_edge_answers import forwarded, publish, until
from gateway.tests.test_streams import LIVE
from shared.testing.metrics import scrape
from shared.testing.net import ThreadedServer, free_port

ORDERS = "/api/v1/orders"


@pytest.fixture(scope="module")
def gateway(rig: Rig, redis_url: str) -> Iterator[tuple[str, str]]:
    """A gateway with a limit of 2 orders per user, and its metrics listener: (url, metrics)."""
    port = free_port()
    settings = gateway_settings({n: s.url for n, s in rig.upstreams.items()}, redis_url,
                                rate_limit_per_user=2, rate_limit_per_network=0,
                                rate_limit_window_seconds=30, metrics_port=port)
    server = ThreadedServer(create_app(settings)).start()
    yield server.url, f"http://127.0.0.1:{port}/metrics"
    server.stop()


def a_user() -> str:
    return str(uuid.uuid4().int % 10**9 + 1000)


async def test_edge_answers_and_rate_limited_refusals_count_by_route(
        gateway: tuple[str, str], rig: Rig, redis: Redis) -> None:
    url, metrics = gateway
    product = uuid.uuid4().int % 10**12 + 1
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        before = await scrape(http, metrics)

        async def order(user: str) -> httpx.Response:
            return await http.post(ORDERS, json={"product_id": product, "quantity": 1},
                                   headers={"Authorization": f"Bearer {rig.token(sub=user)}"})

        await publish(redis, rig, product)

        async def answered() -> bool:
            return not forwarded(await order(a_user()))

        await until(answered)
        edge = await order(a_user())
        limited_user = a_user()
        other_product = product + 1
        answers = [await http.post(ORDERS, json={"product_id": other_product, "quantity": 1},
                                   headers={"Authorization":
                                            f"Bearer {rig.token(sub=limited_user)}"})
                   for _ in range(3)]
        after = await scrape(http, metrics)

    assert edge.status_code == 409
    assert not forwarded(edge)
    assert [a.status_code for a in answers] == [200, 200, 429]
    route = {"route": "/api/v1/orders/**"}  # the route table's pattern, as on http_requests
    edge_counted = after.value("preorder_edge_answers_total", **route) - before.value(
        "preorder_edge_answers_total", **route)
    assert edge_counted >= 2  # the one asserted, and the one that showed the answer in force
    assert after.value("preorder_rate_limited_total", **route) - before.value(
        "preorder_rate_limited_total", **route) == 1
    assert after.value("preorder_redis_up") == 1


async def test_live_streams_open_are_read_at_scrape_time(gateway: tuple[str, str]) -> None:
    url, metrics = gateway
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        assert (await scrape(http, metrics)).value("preorder_live_streams_open") == 0
        streams = [http.stream("GET", LIVE, params={"gap": "3"}) for _ in range(3)]
        opened = [await stream.__aenter__() for stream in streams]
        try:
            assert all(response.status_code == 200 for response in opened)
            assert (await scrape(http, metrics)).value("preorder_live_streams_open") == 3
        finally:
            for stream in streams:
                await stream.__aexit__(None, None, None)
        for _ in range(50):
            if (await scrape(http, metrics)).value("preorder_live_streams_open") == 0:
                break
            await asyncio.sleep(0.05)
        assert (await scrape(http, metrics)).value("preorder_live_streams_open") == 0
