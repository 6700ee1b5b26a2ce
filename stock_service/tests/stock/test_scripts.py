"""The Lua scripts on their own (real Redis, no ledger): window edges by Redis's clock, the limit,
quantities over what remains, and every script replayed. The same cases run on a three-node
Redis Cluster in test_cluster.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from stock_service.stock.scripts import HoldRecord, ProductKeys, StockScripts
from stock_service.tests.conftest import new_id

Client = Redis | RedisCluster


async def redis_now_ms(redis: Client) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def seed(scripts: StockScripts, *, total: int = 10, opens: int = 0, closes: int = 0,
               limit: int = 0, price: int = 5_000, active: int = 1) -> int:
    """A product's live state as a rebuild would load it; returns its id."""
    product_id = new_id()
    token = os.urandom(4).hex()
    await scripts.redis.set(ProductKeys.of(product_id).rebuilding, token)
    meta = {"total": total, "remaining": total, "held": 0, "sold": 0, "opens": opens,
            "closes": closes, "limit": limit, "price": price, "seller": 1, "active": active}
    assert await scripts.load(product_id, token, meta, {}, {})
    return product_id


async def counts(redis: Client, product_id: int) -> dict[str, int]:
    values = await redis.hmget(ProductKeys.of(product_id).meta, "remaining", "held", "sold")
    return dict(zip(("remaining", "held", "sold"), (int(v or 0) for v in values), strict=True))


@pytest.fixture
async def scripts(redis_url: str, redis: Redis) -> AsyncIterator[StockScripts]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield StockScripts(client)
    await client.aclose()


async def check_window_edges(scripts: StockScripts) -> None:
    now = await redis_now_ms(scripts.redis)
    a_second_early = await seed(scripts, opens=now + 1000)
    assert (await scripts.reserve(a_second_early, new_id(), 1, 1)).word == "sale_not_open"
    at_opening = await seed(scripts, opens=await redis_now_ms(scripts.redis))
    assert (await scripts.reserve(at_opening, new_id(), 1, 1)).word == "held"
    at_closing = await seed(scripts, opens=now - 60_000,
                            closes=await redis_now_ms(scripts.redis))
    assert (await scripts.reserve(at_closing, new_id(), 1, 1)).word == "sale_closed"
    before_closing = await seed(scripts, opens=now - 60_000, closes=now + 60_000)
    assert (await scripts.reserve(before_closing, new_id(), 1, 1)).word == "held"
    view = await scripts.view(a_second_early)
    assert (view.active, view.remaining, view.rebuilding) == (True, 10, False)
    assert view.opens_ms - view.now_ms <= 1000


async def check_limit_and_quantity(scripts: StockScripts) -> None:
    product = await seed(scripts, total=5, limit=3)
    assert (await scripts.reserve(product, new_id(), 1, 4)).word == "purchase_limit_exceeded"
    assert (await scripts.reserve(product, new_id(), 1, 2)).word == "held"
    assert (await scripts.reserve(product, new_id(), 1, 2)).word == "purchase_limit_exceeded"
    assert (await scripts.reserve(product, new_id(), 1, 1)).word == "held"
    assert (await scripts.reserve(product, new_id(), 2, 3)).word == "sold_out"  # 2 remain
    assert (await scripts.reserve(product, new_id(), 2, 2)).word == "held"
    assert await counts(scripts.redis, product) == {"remaining": 0, "held": 5, "sold": 0}
    gone = await seed(scripts, active=0)
    assert (await scripts.reserve(gone, new_id(), 1, 1)).word == "not_found"


async def check_replays(scripts: StockScripts) -> None:
    product = await seed(scripts, total=2)
    order = new_id()
    first = await scripts.reserve(product, order, 7, 2)
    assert first.word == "held"
    assert first.price == 5_000
    replay = await scripts.reserve(product, order, 7, 2)
    assert (replay.word, replay.hold) == ("replay", first.hold)
    refused = new_id()
    assert (await scripts.reserve(product, refused, 8, 1)).word == "sold_out"
    assert (await scripts.commit(product, order)).word == "committed"
    assert (await scripts.commit(product, order)).word == "committed"
    assert await counts(scripts.redis, product) == {"remaining": 0, "held": 0, "sold": 2}
    assert (await scripts.release(product, order)).word == "released"
    assert (await scripts.release(product, order)).word == "released"
    assert await counts(scripts.redis, product) == {"remaining": 2, "held": 0, "sold": 0}
    # The first answer stands: the refused order is still refused with units back in stock.
    assert (await scripts.reserve(product, refused, 8, 1)).word == "sold_out"
    assert (await scripts.commit(product, order)).word == "released"
    assert (await scripts.release(product, new_id())).word == "unknown"


async def check_unreserve_and_load(scripts: StockScripts) -> None:
    product = await seed(scripts, total=3)
    order = new_id()
    await scripts.reserve(product, order, 7, 3)
    assert await scripts.unreserve(product, order, remember="sold_out")
    assert not await scripts.unreserve(product, order)
    assert await counts(scripts.redis, product) == {"remaining": 3, "held": 0, "sold": 0}
    assert (await scripts.reserve(product, order, 7, 3)).word == "sold_out"
    # A load without the rebuild flag's token writes nothing.
    keys = ProductKeys.of(product)
    assert not await scripts.load(product, "not-the-token", {"remaining": 99}, {}, {})
    await scripts.redis.set(keys.rebuilding, "t")
    held = HoldRecord("held", 7, 1, 1)
    assert await scripts.load(product, "t", {"total": 3, "remaining": 2, "held": 1, "sold": 0,
                                             "opens": 0, "closes": 0, "limit": 0,
                                             "price": 1, "seller": 1, "active": 1},
                              {7: 1}, {order: held})
    assert not await scripts.redis.exists(keys.rebuilding)
    assert (await scripts.reserve(product, order, 7, 1)).hold == held


async def check_rebuilding_blocks_reserves(scripts: StockScripts) -> None:
    product = await seed(scripts, total=3)
    await scripts.redis.set(ProductKeys.of(product).rebuilding, "someone", px=60_000)
    assert (await scripts.reserve(product, new_id(), 1, 1)).word == "rebuilding"
    assert (await scripts.view(product)).rebuilding
    missing = new_id()
    assert (await scripts.reserve(missing, new_id(), 1, 1)).word == "missing"
    assert (await scripts.view(missing)).active is None


async def check_configure_keeps_the_newer_settings(scripts: StockScripts) -> None:
    product = await seed(scripts, total=5)
    settings = {"total": 5, "opens": 0, "closes": 0, "limit": 0, "seller": 1, "active": 1}
    assert await scripts.configure(product, {**settings, "price": 7_000, "version": 3}) == 5
    # Read before the change above was made: it changes nothing.
    assert await scripts.configure(product, {**settings, "total": 4, "price": 6_000,
                                             "version": 2}) == 5
    meta = ProductKeys.of(product).meta
    assert await scripts.redis.hmget(meta, "price", "total", "version") == ["7000", "5", "3"]
    assert await scripts.configure(product, {**settings, "total": 4, "price": 6_000,
                                             "version": 3}) == 4
    assert await scripts.redis.hmget(meta, "price", "total", "version") == ["6000", "4", "3"]


CHECKS: list[Any] = [check_window_edges, check_limit_and_quantity, check_replays,
                     check_unreserve_and_load, check_rebuilding_blocks_reserves,
                     check_configure_keeps_the_newer_settings]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_scripts_on_one_redis(scripts: StockScripts, check: Any) -> None:
    await check(scripts)
