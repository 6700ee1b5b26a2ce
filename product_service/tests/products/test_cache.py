"""The product detail cache against real Redis and MariaDB: one database read for a crowd at a
cold product, and no stale row cached by a read that raced a change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.dependencies import Resources
from product_service.products.cache import (
    ProductDetails,
    detail_key,
    encode,
    generation_key,
    render,
)
from product_service.products.repository import ProductsRepository
from product_service.tests.helpers import create_product
from product_service.tests.products.factories import make_product
from shared.reads import AnySelect, ReadResult, ReadSession
from shared.testing.identity import new_user_id, seller_headers
from shared.testing.net import free_port


class CountingReadSession(ReadSession):
    """A real ReadSession that counts the statements it sends to MariaDB."""

    statements = 0

    async def execute(self, statement: AnySelect,
                      parameters: Mapping[str, Any] | None = None) -> ReadResult:
        self.statements += 1
        return await super().execute(statement, parameters)


@pytest.fixture
async def counting_reads(database_url: str) -> AsyncIterator[CountingReadSession]:
    reads = await CountingReadSession.open(database_url, pool_size=2)
    assert isinstance(reads, CountingReadSession)
    yield reads
    await reads.close()


async def test_a_thousand_concurrent_reads_of_a_cold_product_cost_one_database_read(
    resources: Resources, session: AsyncSession, counting_reads: CountingReadSession
) -> None:
    product = await make_product(session, seller_id=new_user_id(), name="Hot item")
    await session.commit()
    details = ProductDetails(resources.datastores.redis, counting_reads, ttl_seconds=60)

    bodies = await asyncio.gather(*(details.body(product.id) for _ in range(1000)))

    assert counting_reads.statements == 1
    assert len(set(bodies)) == 1
    assert bodies[0] is not None
    assert json.loads(bodies[0])["name"] == "Hot item"
    await details.body(product.id)
    assert counting_reads.statements == 1, "the next read comes from Redis"


async def test_a_crowd_at_an_unknown_product_costs_one_read_too(
    resources: Resources, counting_reads: CountingReadSession
) -> None:
    details = ProductDetails(resources.datastores.redis, counting_reads, ttl_seconds=60)
    unknown = 2**53 - 2
    assert set(await asyncio.gather(*(details.body(unknown) for _ in range(200)))) == {None}
    assert counting_reads.statements == 1


async def test_a_read_that_raced_a_change_never_caches_the_row_it_read(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    seller = new_user_id()
    product = await create_product(client, seller, name="Before")
    redis = resources.datastores.redis
    # A reader misses the cache, noting the generation, and reads the row...
    generation = await redis.get(generation_key(product["id"]))
    old_row = await ProductsRepository(reads=resources.datastores.reads).get_active(product["id"])
    assert old_row is not None
    # ...the seller's change commits and invalidates meanwhile...
    changed = await client.patch(f"/api/v1/products/{product['id']}", json={"name": "After"},
                                 headers=seller_headers(seller))
    assert changed.status_code == 200
    # ...and the reader's store of what it read is refused.
    assert not await resources.details.store(product["id"], str(generation or ""),
                                             encode(old_row))
    assert await redis.get(detail_key(product["id"])) is None
    assert (await client.get(f"/api/v1/products/{product['id']}")).json()["name"] == "After"


async def test_a_store_at_the_current_generation_is_kept(
    resources: Resources, session: AsyncSession
) -> None:
    product = await make_product(session, seller_id=new_user_id())
    await session.commit()
    row = await ProductsRepository(reads=resources.datastores.reads).get_active(product.id)
    assert row is not None
    assert await resources.details.store(product.id, "", encode(row))
    assert await resources.datastores.redis.get(detail_key(product.id)) == encode(row)


async def test_without_redis_the_database_answers(
    resources: Resources, session: AsyncSession, counting_reads: CountingReadSession
) -> None:
    product = await make_product(session, seller_id=new_user_id(), name="Still here")
    await session.commit()
    # Nothing listens on that port: every Redis call fails at once.
    away = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True,
                          socket_connect_timeout=1)
    try:
        details = ProductDetails(away, counting_reads, ttl_seconds=60)
        bodies = await asyncio.gather(*(details.body(product.id) for _ in range(50)))
    finally:
        await away.aclose()
    assert {json.loads(body or b"{}")["name"] for body in bodies} == {"Still here"}
    assert counting_reads.statements == 1


def test_the_sale_state_is_computed_when_the_answer_is_made() -> None:
    value = '1000|2000|{"id":1}'
    assert json.loads(render(value, 999))["sale_state"] == "scheduled"
    assert json.loads(render(value, 1000))["sale_state"] == "open"
    assert json.loads(render(value, 1999))["sale_state"] == "open"
    assert json.loads(render(value, 2000))["sale_state"] == "closed"
    assert json.loads(render('0|0|{"id":1}', 5))["sale_state"] == "open"
