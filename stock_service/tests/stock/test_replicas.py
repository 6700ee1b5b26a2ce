"""Two replicas run stock's background work at the same time against one MySQL and one Redis
(docs/replicas.md, "Background loops"): each expired hold is released by one of them (SKIP
LOCKED), a product is rebuilt by one at a time and a rebuild that lost its lease cannot write
(a Redis lease whose token the load script checks), and reconcile rounds side by side leave
Redis equal to the ledger. No unit comes back twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.db import create_engine, create_sessionmaker
from stock_service.dependencies import Resources
from stock_service.stock.scripts import ProductKeys
from stock_service.tests.conftest import new_id
from stock_service.tests.factories import Stock, make_product, stock_parts
from stock_service.tests.stock.test_service import ledger_counts, redis_counts


@pytest.fixture
async def replicas(resources: Resources, database_url: str) -> AsyncIterator[tuple[Stock, Stock]]:
    """Two processes' parts: each with its own pool and memories, the same datastores."""
    engines = [create_engine(database_url, pool_size=5) for _ in range(2)]
    try:
        yield stock_parts(resources, sessions=create_sessionmaker(engines[0])), \
            stock_parts(resources, sessions=create_sessionmaker(engines[1]))
    finally:
        for engine in engines:
            await engine.dispose()


async def test_two_replicas_releasing_expired_holds_release_each_once(
        replicas: tuple[Stock, Stock], redis: Redis, session: AsyncSession) -> None:
    one, other = replicas
    product = await make_product(one.catalog, total=40)
    for _ in range(40):
        await one.holds.reserve(product.product_id, new_id(), user_id=new_id(), quantity=1,
                                expires_at=utcnow() - timedelta(seconds=1))

    async def round_of(stock: Stock) -> int:
        released = 0
        while moved := await stock.holds.release_expired(grace=timedelta(0), batch=3):
            released += moved
        return released

    released = await asyncio.gather(round_of(one), round_of(other))
    # Rows one replica is releasing are skipped by the other: 40 releases in all, not more.
    assert sum(released) == 40
    assert await ledger_counts(session, product.product_id) == (40, 0, 0)
    assert await redis_counts(redis, product.product_id) == (40, 0, 0)


async def test_two_replicas_rebuilding_one_product_load_it_one_at_a_time(
        replicas: tuple[Stock, Stock], redis: Redis, session: AsyncSession) -> None:
    one, other = replicas
    product = await make_product(one.catalog, total=10)
    for _ in range(3):
        await one.holds.reserve(product.product_id, new_id(), user_id=new_id(), quantity=1)
    await redis.hset(ProductKeys.of(product.product_id).meta, "remaining", 99)  # Redis wrong
    results = await asyncio.gather(one.live.rebuild(product.product_id),
                                   other.live.rebuild(product.product_id))
    assert sorted(results) == [False, True]  # the second found the lease taken
    assert await redis_counts(redis, product.product_id) == await ledger_counts(
        session, product.product_id) == (7, 3, 0)


async def test_a_rebuild_whose_lease_another_replica_took_over_cannot_write(
        replicas: tuple[Stock, Stock], redis: Redis) -> None:
    one, _ = replicas
    product = await make_product(one.catalog, total=10)
    keys = ProductKeys.of(product.product_id)
    # A rebuild that outlived its lease (REBUILD_LOCK_MS): another replica holds it now.
    await redis.set(keys.rebuilding, "the other replica's token", px=10_000)
    stale = {"total": 10, "remaining": 1, "held": 9, "sold": 0}
    assert not await one.live.scripts.load(product.product_id, "a lapsed token", stale, {}, {})
    assert await redis_counts(redis, product.product_id) == (10, 0, 0)


async def test_two_replicas_reconciling_at_once_leave_redis_equal_to_the_ledger(
        replicas: tuple[Stock, Stock], redis: Redis, session: AsyncSession) -> None:
    one, other = replicas
    products = [await make_product(one.catalog, total=5) for _ in range(3)]
    for product in products:
        await one.holds.reserve(product.product_id, new_id(), user_id=new_id(), quantity=2)
    # Redis behind the ledger (a hold it took that the ledger never got), and ahead of it (an
    # older snapshot): the reconciler puts each right, whoever runs it.
    await redis.hset(ProductKeys.of(products[0].product_id).meta, "remaining", 1)
    await redis.hset(ProductKeys.of(products[1].product_id).meta, "remaining", 5)
    for _ in range(3):  # "fewer" is rebuilt once it has stood still for two rounds
        await asyncio.gather(one.live.reconcile_once(), other.live.reconcile_once())
    for product in products:
        assert await redis_counts(redis, product.product_id) == await ledger_counts(
            session, product.product_id) == (3, 2, 0)
