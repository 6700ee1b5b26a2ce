"""Every state change of orders/repository.py is one conditional UPDATE: against real MariaDB,
each moves only the order in the state it expects, so a race between pay, cancel and expire ends
one way only; the reads and the id blocks as the service relies on them."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from order_service.orders.repository import NewOrder, OrderReads, OrderRepository
from order_service.orders.schemas import OrderOut
from shared.clock import utcnow
from shared.db import Transactions, create_engine, create_sessionmaker
from shared.pagination import Key
from shared.reads import ReadSession
from shared.testing.datastores import fresh_database

TOKEN = "a" * 32
_ids = itertools.count(int.from_bytes(os.urandom(3), "big") * 1000 + 1)


def new_id() -> int:
    return next(_ids)


@pytest.fixture(scope="module")
def database_url() -> str:
    return fresh_database("order_service", "preorder_order", "repository")


@pytest.fixture(scope="module")
async def orders(database_url: str) -> AsyncIterator[Transactions[OrderRepository]]:
    engine = create_engine(database_url, pool_size=4)
    yield Transactions(create_sessionmaker(engine), OrderRepository)
    await engine.dispose()


def an_order(*, user_id: int | None = None, expires_at: datetime | None = None,
             created_at: datetime | None = None) -> OrderOut:
    now = (created_at or utcnow()).replace(microsecond=0)
    return OrderOut(id=new_id(), user_id=user_id or new_id(), product_id=new_id(), quantity=2,
                    unit_price=1_500, amount=3_000, status="pending_payment",
                    expires_at=expires_at or now + timedelta(minutes=10), created_at=now)


async def insert(orders: Transactions[OrderRepository], order: OrderOut, *,
                 key: str | None = None) -> None:
    async with orders.write() as repository:
        await repository.insert([NewOrder(order, idempotency_key=key,
                                          idempotency_fingerprint="f" * 64 if key else None)])


async def status_of(orders: Transactions[OrderRepository], order_id: int) -> str:
    async with orders.read() as repository:
        order = await repository.order(order_id)
    assert order is not None
    return order.status


async def test_an_inserted_order_reads_back_as_written(
    orders: Transactions[OrderRepository]
) -> None:
    order = an_order()
    await insert(orders, order, key="k-1")
    async with orders.read() as repository:
        assert await repository.order(order.id) == order
        assert await repository.by_idempotency_key(order.user_id, "k-1") == (order, "f" * 64)
        assert await repository.by_idempotency_key(order.user_id, "k-2") is None
        assert await repository.existing_ids([order.id, new_id()]) == {order.id}


async def test_payment_moves_only_a_pending_order_with_its_lease(
    orders: Transactions[OrderRepository]
) -> None:
    order, now = an_order(), utcnow()
    await insert(orders, order)
    async with orders.write() as repository:
        assert not await repository.lease_for_payment(order.id, new_id(), token=TOKEN,
                                                      until=now + timedelta(seconds=30), now=now)
        assert await repository.lease_for_payment(order.id, order.user_id, token=TOKEN,
                                                  until=now + timedelta(seconds=30), now=now)
        # One payment at a time: a second lease waits for the first to run out.
        assert not await repository.lease_for_payment(order.id, order.user_id, token="b" * 32,
                                                      until=now + timedelta(seconds=30), now=now)
        assert not await repository.mark_paid(order.id, token="b" * 32, payment_id=1)
        assert await repository.mark_paid(order.id, token=TOKEN, payment_id=1)
        assert not await repository.mark_paid(order.id, token=TOKEN, payment_id=1)
        assert not await repository.mark_payment_failed(order.id, token=TOKEN, payment_id=1)
        owed = await repository.settling(order.id)
    assert owed is not None
    assert (owed.status, owed.stock_effect, owed.payment_effect) == ("paid", "commit", None)


async def test_a_cancel_moves_pending_to_cancelled_and_paid_to_refunded(
    orders: Transactions[OrderRepository]
) -> None:
    pending, paid = an_order(), an_order()
    await insert(orders, pending)
    await insert(orders, paid)
    now = utcnow()
    async with orders.write() as repository:
        assert await repository.lease_for_payment(paid.id, paid.user_id, token=TOKEN,
                                                  until=now + timedelta(seconds=30), now=now)
        assert await repository.mark_paid(paid.id, token=TOKEN, payment_id=7)
        assert not await repository.cancel(pending.id, new_id(), from_status="pending_payment")
        assert not await repository.cancel(pending.id, pending.user_id, from_status="paid")
        assert await repository.cancel(pending.id, pending.user_id, from_status="pending_payment")
        assert await repository.cancel(paid.id, paid.user_id, from_status="paid")
        cancelled, refunded = (await repository.settling(pending.id),
                               await repository.settling(paid.id))
    assert cancelled is not None
    assert refunded is not None
    assert (cancelled.status, cancelled.stock_effect, cancelled.payment_effect) == (
        "cancelled", "release", None)
    assert (refunded.status, refunded.stock_effect, refunded.payment_effect) == (
        "refunded", "release", "refund")


async def test_only_an_unpaid_order_past_its_deadline_and_free_of_a_lease_expires(
    orders: Transactions[OrderRepository]
) -> None:
    now = utcnow()
    due, leased, current = (an_order(expires_at=now - timedelta(seconds=5)),
                            an_order(expires_at=now - timedelta(seconds=5)), an_order())
    for order in (due, leased, current):
        await insert(orders, order)
    async with orders.write() as repository:
        await repository.session.execute(
            text("UPDATE orders SET lease_token = :t, lease_until = :u WHERE id = :id"),
            {"t": TOKEN, "u": now + timedelta(seconds=30), "id": leased.id})
    async with orders.read() as repository:
        listed = {order.order_id for order in await repository.past_deadline(now=now,
                                                                             limit=1000)}
    assert due.id in listed
    assert leased.id not in listed  # a payment is in flight: its outcome decides
    assert current.id not in listed
    async with orders.write() as repository:
        assert await repository.expire(due.id, now=now)
        assert not await repository.expire(due.id, now=now)  # once
        assert not await repository.expire(leased.id, now=now)  # a payment is in flight
        assert not await repository.expire(current.id, now=now)
    assert await status_of(orders, due.id) == "expired"


async def test_an_effect_is_cleared_only_if_it_is_still_the_one_carried_out(
    orders: Transactions[OrderRepository]
) -> None:
    order = an_order()
    await insert(orders, order)
    async with orders.write() as repository:
        assert await repository.cancel(order.id, order.user_id, from_status="pending_payment")
        await repository.effect_done(order.id, stock_effect="commit")  # not this one's
        assert order.id in await repository.unsettled(older_than=utcnow() + timedelta(seconds=1),
                                                      limit=10_000)
        await repository.effect_done(order.id, stock_effect="release")
        owed = await repository.settling(order.id)
    assert owed is not None
    assert owed.stock_effect is None


async def test_a_users_orders_come_newest_first_in_pages(
    orders: Transactions[OrderRepository], database_url: str
) -> None:
    buyer, start = new_id(), utcnow().replace(microsecond=0)
    made = [an_order(user_id=buyer, created_at=start + timedelta(seconds=i)) for i in range(5)]
    for order in made:
        await insert(orders, order)
    reads = await ReadSession.open(database_url, pool_size=1)
    try:
        page_reads = OrderReads(reads)
        first = await page_reads.page(buyer, status=None, limit=3, after=None)
        rest = await page_reads.page(buyer, status=None, limit=3,
                                     after=Key(first[-1].created_at, first[-1].id))
        assert [o.id for o in first + rest] == [o.id for o in reversed(made)]
        assert await page_reads.page(buyer, status="paid", limit=3, after=None) == []
    finally:
        await reads.close()


async def test_id_blocks_never_overlap(orders: Transactions[OrderRepository]) -> None:
    async def take() -> int:
        async with orders.write() as repository:
            return await repository.take_id_block("repository-test", 100)

    # Replicas taking blocks at once, the sequence's row made by one of them.
    starts = sorted(await asyncio.gather(*(take() for _ in range(6))))
    assert all(later - earlier >= 100 for earlier, later in itertools.pairwise(starts))
