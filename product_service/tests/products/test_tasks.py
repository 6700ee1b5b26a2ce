"""The settler of pending products (products/tasks.py) against real MariaDB and stock_service:
a product its creating request left pending is withdrawn from stock, then deleted, and never
under a request that is still finishing it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.clients import StockClient
from product_service.dependencies import Resources
from product_service.products.models import Product
from product_service.products.repository import ProductsRepository
from product_service.products.tasks import settle_pending_products
from product_service.tests.products.factories import make_product
from shared.clock import utcnow
from shared.db import create_engine, create_sessionmaker
from shared.http import ServiceCallFailed, service_client
from shared.internal.stock import StockRegistration
from shared.testing.identity import new_user_id, signer
from shared.testing.net import free_port


async def status_of(session: AsyncSession, product_id: int) -> str | None:
    status = await session.scalar(select(Product.status).where(Product.id == product_id))
    await session.commit()
    return status


async def test_an_old_pending_product_is_withdrawn_from_stock_then_deleted(
    resources: Resources, session: AsyncSession
) -> None:
    seller = new_user_id()
    old = await make_product(session, seller_id=seller, status="pending",
                             created_at=utcnow() - timedelta(minutes=5))
    young = await make_product(session, seller_id=seller, status="pending")
    active = await make_product(session, seller_id=seller,
                                created_at=utcnow() - timedelta(minutes=5))
    await session.commit()
    # Its creating request had registered it before it died.
    await resources.stock.register(old.id, StockRegistration(seller_id=seller, price=1, total=5))

    settled = await settle_pending_products(resources.datastores.sessionmaker, resources.stock,
                                            older_than=timedelta(seconds=30))

    assert settled >= 1
    assert await status_of(session, old.id) is None
    entry = await resources.stock.entry(old.id)
    assert entry is not None
    assert entry.deleted
    assert await status_of(session, young.id) == "pending"
    assert await status_of(session, active.id) == "active"


async def test_without_stock_service_a_pending_product_waits_for_the_next_round(
    resources: Resources, session: AsyncSession
) -> None:
    old = await make_product(session, seller_id=new_user_id(), status="pending",
                             created_at=utcnow() - timedelta(days=300))
    await session.commit()
    async with service_client("stock_service", f"http://127.0.0.1:{free_port()}",
                              signer=signer("product_service"),
                              timeout_seconds=1) as http:
        with pytest.raises(ServiceCallFailed):
            await settle_pending_products(resources.datastores.sessionmaker, StockClient(http),
                                          older_than=timedelta(seconds=30))
    assert await status_of(session, old.id) == "pending"
    await settle_pending_products(resources.datastores.sessionmaker, resources.stock,
                                  older_than=timedelta(seconds=30))
    assert await status_of(session, old.id) is None


async def test_a_product_its_request_is_activating_is_skipped_and_one_settled_stays_settled(
    resources: Resources, session: AsyncSession
) -> None:
    seller = new_user_id()
    sessions = resources.datastores.sessionmaker
    racing = await make_product(session, seller_id=seller, status="pending",
                                created_at=utcnow() - timedelta(minutes=5))
    await session.commit()
    # The request holds the row (its activation, uncommitted): the settler passes it by.
    async with sessions() as request, request.begin():
        assert await ProductsRepository(session=request).activate(racing.id)
        await settle_pending_products(sessions, resources.stock, older_than=timedelta(seconds=30))
    assert await status_of(session, racing.id) == "active"

    late = await make_product(session, seller_id=seller, status="pending",
                              created_at=utcnow() - timedelta(minutes=5))
    await session.commit()
    await settle_pending_products(sessions, resources.stock, older_than=timedelta(seconds=30))
    # The request that finally gets to it finds nothing to activate (and answers 503).
    async with sessions() as request, request.begin():
        assert not await ProductsRepository(session=request).activate(late.id)


async def test_two_replicas_settling_at_once_settle_each_product_once(
    resources: Resources, session: AsyncSession, database_url: str
) -> None:
    """Rows one replica holds are skipped by the other (SKIP LOCKED): each product is withdrawn
    and deleted by one of them, and the rounds' counts add up to the products there were."""
    seller = new_user_id()
    old = [await make_product(session, seller_id=seller, status="pending",
                              created_at=utcnow() - timedelta(minutes=5)) for _ in range(12)]
    await session.commit()
    stale = await session.scalar(select(func.count()).select_from(Product).where(
        Product.status == "pending", Product.created_at < utcnow() - timedelta(seconds=30)))
    await session.commit()
    engines = [create_engine(database_url, pool_size=2) for _ in range(2)]
    try:
        settled = await asyncio.gather(*(
            settle_pending_products(create_sessionmaker(engine), resources.stock,
                                    older_than=timedelta(seconds=30)) for engine in engines))
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(settled) == stale
    for product in old:
        assert await status_of(session, product.id) is None
