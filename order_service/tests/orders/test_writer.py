"""The order writer against real MariaDB (the sale's order schema): orders of one product
arriving together share INSERTs, a duplicate Idempotency-Key in a batch fails only its own
order, and an order whose caller went away is written all the same."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from order_service.orders.repository import NewOrder, OrderRepository
from order_service.orders.schemas import OrderOut
from order_service.orders.writer import OrderWriter
from shared.clock import utcnow
from shared.db import Transactions


def new_id() -> int:
    return int.from_bytes(os.urandom(6), "big") + 1


def new_order(product_id: int, *, user_id: int | None = None, key: str | None = None) -> NewOrder:
    now = utcnow().replace(microsecond=0)
    return NewOrder(OrderOut(id=new_id(), user_id=user_id or new_id(), product_id=product_id,
                             quantity=1, unit_price=1_000, amount=1_000,
                             status="pending_payment", expires_at=now + timedelta(minutes=10),
                             created_at=now),
                    idempotency_key=key, idempotency_fingerprint="f" * 64 if key else None)


def transactions(engine: AsyncEngine) -> Transactions[OrderRepository]:
    return Transactions(async_sessionmaker(engine, expire_on_commit=False), OrderRepository)


@pytest.fixture
def writer(engines: dict[str, AsyncEngine]) -> OrderWriter:
    return OrderWriter(transactions(engines["order"]))


@contextmanager
def inserts_on(engine: AsyncEngine) -> Iterator[list[int]]:
    """The row count of each INSERT INTO orders sent while inside."""
    seen: list[int] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
             executemany: bool) -> None:
        if statement.startswith("INSERT INTO orders"):
            seen.append(len(parameters) if executemany else 1)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def stored(engine: AsyncEngine, orders: list[NewOrder]) -> set[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM orders WHERE product_id = :p"),
                                  {"p": orders[0].order.product_id})
        return {row[0] for row in rows}


async def test_orders_arriving_together_share_inserts(
    writer: OrderWriter, engines: dict[str, AsyncEngine]
) -> None:
    product_id = new_id()
    orders = [new_order(product_id) for _ in range(60)]
    with inserts_on(engines["order"]) as inserts:
        await asyncio.gather(*(writer.write(order) for order in orders))
    assert await stored(engines["order"], orders) == {new.order.id for new in orders}
    assert sum(inserts) == 60
    assert 1 <= len(inserts) < 10  # a lone first order, then the rest in a few batches
    assert (writer._waiting, writer._writers) == ({}, {})


async def test_a_duplicate_key_in_a_batch_fails_only_its_own_order(
    writer: OrderWriter, engines: dict[str, AsyncEngine]
) -> None:
    product_id, buyer = new_id(), new_id()
    first = new_order(product_id, user_id=buyer, key="k-dup")
    await writer.write(first)
    again = new_order(product_id, user_id=buyer, key="k-dup")
    others = [new_order(product_id) for _ in range(20)]
    outcomes = await asyncio.gather(*(writer.write(order) for order in [*others[:10], again,
                                                                         *others[10:]]),
                                    return_exceptions=True)
    assert isinstance(outcomes[10], IntegrityError)
    assert outcomes[:10] + outcomes[11:] == [None] * 20
    assert await stored(engines["order"], others) == {o.order.id for o in [first, *others]}


class GatedWriter(OrderWriter):
    """Its first transaction waits for the gate: what arrives meanwhile waits for the next."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def _write_together(self, rows: list[NewOrder]) -> None:
        if not self.started.is_set():
            self.started.set()
            await self.gate.wait()
        await super()._write_together(rows)


async def test_an_order_whose_caller_is_cancelled_is_still_written(
    engines: dict[str, AsyncEngine]
) -> None:
    """Its units are held for it: the order must land whether or not anyone still waits (the
    caller, cancelled, does not release the hold), and a stop waits for it (drain)."""
    writer = GatedWriter(transactions(engines["order"]))
    product_id = new_id()
    first, gone = new_order(product_id), new_order(product_id)
    writing = asyncio.create_task(writer.write(first))
    await asyncio.wait_for(writer.started.wait(), 5)
    cancelled = asyncio.create_task(writer.write(gone))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    writer.gate.set()
    await writer.drain(timeout=5)
    await writing
    assert await stored(engines["order"], [first]) == {first.order.id, gone.order.id}
    assert (writer._waiting, writer._writers) == ({}, {})
