"""A process killed, or a step failing, at the worst moment loses nothing: order_service is
restarted with a fault built in (tests/faults.py, a dependency override), then normally again."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from order_service.tests.faults import FAULT_VARIABLE
from shared.testing.sale import Sale, register_product
from shared.testing.sale_flow import get_order, order, pay, settled

WITH_FAULT = "order_service.tests.faults:create_app_with_fault"
PAYMENT_WITH_FAULT = "payment_service.tests.faults:create_app_with_fault"


def user() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


async def test_killed_between_reserve_and_insert_the_units_come_back(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine], redis: Redis
) -> None:
    product = await register_product(http, sale, total=2)
    sale.restart("order", factory=WITH_FAULT, **{FAULT_VARIABLE: "after_reserve"})
    try:
        with pytest.raises(httpx.HTTPError):
            await order(http, sale, user=user(), product=product, quantity=2)
    finally:
        sale.restart("order")
    # A hold no order records: released once it is older than the orphan bound (3 s here).
    counts = await settled(engines, redis, product, timeout=20)
    assert (counts["remaining"], counts["held"]) == (2, 0)
    assert (await order(http, sale, user=user(), product=product, quantity=2)).status_code == 201


async def test_an_insert_whose_answer_was_lost_keeps_its_order_and_its_units(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine], redis: Redis
) -> None:
    """The database committed the order, then the connection failed before saying so: the
    order is there, so the buyer gets it and its hold stays (released, it would be an order
    whose units are sold to someone else)."""
    product = await register_product(http, sale, total=2)
    buyer = user()
    sale.restart("order", factory=WITH_FAULT, **{FAULT_VARIABLE: "insert_answer_lost"})
    try:
        created = await order(http, sale, user=buyer, product=product)
    finally:
        sale.restart("order")
    assert created.status_code == 201, created.text
    status = (await get_order(http, sale, user=buyer, order_id=created.json()["id"])).json()[
        "status"]
    counts = await settled(engines, redis, product)
    # Its units stay held for it; on a machine so busy that the restart outlived the test
    # sale's 4 s to pay, it expired and gave them back: either way it exists and agrees.
    assert (status, counts["remaining"], counts["held"]) in (
        ("pending_payment", 1, 1), ("expired", 2, 0))


async def pay_until_cut_off(http: httpx.AsyncClient, sale: Sale, *, user: int,
                            order_id: int) -> None:
    """Pays until the process dies at its fault point (the call raises). On a busy machine a
    payment may be answered 503 before it gets there (its lease call to order_service timed
    out; nothing was charged): that one is tried again, a few times at most."""
    for _ in range(5):
        answer = await pay(http, sale, user=user, order_id=order_id)
        assert answer.status_code == 503, answer.text


async def test_killed_after_a_payment_succeeded_the_order_still_ends_paid(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine], redis: Redis
) -> None:
    product = await register_product(http, sale, total=3)
    buyer = user()
    # Its outcome is committed with the payment, then the process exits before telling. Restarted
    # before the order is made: the test sale's orders have 4 s to be paid.
    sale.restart("payment", factory=PAYMENT_WITH_FAULT)
    order_id = (await order(http, sale, user=buyer, product=product)).json()["id"]
    try:
        with pytest.raises(httpx.HTTPError):
            await pay_until_cut_off(http, sale, user=buyer, order_id=order_id)
    finally:
        sale.restart("payment")
    # The outcome was written with the payment; the outbox delivers it after the restart.
    counts = await settled(engines, redis, product, timeout=20)
    assert counts["orders"] == {"paid": 1}
    assert counts["sold"] == 1
    assert (await get_order(http, sale, user=buyer, order_id=order_id)).json()["status"] == "paid"


async def test_a_straight_on_order_answered_5xx_leaves_no_place_and_no_hold(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine], redis: Redis
) -> None:
    """A request that went straight on with its place in line and was answered 5xx (its insert
    failed, nothing written) ends with neither: the place is forgotten, so nobody decides it
    again behind the buyer's back, and the units it held are back for the next buyer."""
    product = await register_product(http, sale, total=1)
    tickets = f"line:{{p:{product}}}:tickets"
    sale.restart("order", factory=WITH_FAULT, **{FAULT_VARIABLE: "insert_fails"})
    try:
        failed = await order(http, sale, user=user(), product=product)
        assert failed.status_code == 503, failed.text
        # Forgotten once the answer is out, by a DEL of its own.
        deadline = time.monotonic() + 10
        while await redis.hlen(tickets):
            assert time.monotonic() < deadline, "the place is still in line"
            await asyncio.sleep(0.05)
    finally:
        sale.restart("order")
    counts = await settled(engines, redis, product)
    assert (counts["remaining"], counts["held"], counts["orders"]) == (1, 0, {})
    assert (await order(http, sale, user=user(), product=product)).status_code == 201
