"""Two replicas of payment_service run its loops at the same time against one MySQL, one
order_service and one processor (docs/replicas.md, "Background loops"): an outcome delivered
by both is taken once (order_service's paid/failed are idempotent for the payment that holds
the lease), and a stale payment failed by both is failed once and its charge voided, never a
paid order with a voided charge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_service.clients import OrdersClient
from payment_service.payments.outcomes import PaymentOutcomes
from payment_service.payments.processor import HttpProcessor
from payment_service.payments.recovery import PaymentRecovery
from payment_service.payments.repository import PaymentRepository
from payment_service.tests.payments.test_races import CALM, charges_of, set_faults, user
from shared.clock import utcnow
from shared.db import Transactions, create_engine, create_sessionmaker
from shared.http import service_client
from shared.reads import ReadSession
from shared.testing.identity import identity_headers, signer
from shared.testing.sale import SIMULATOR, Sale, register_product
from shared.testing.sale_flow import get_order, order, pay


@asynccontextmanager
async def payment_replica(sale: Sale) -> AsyncIterator[PaymentRecovery]:
    """One more process's loop rounds, in-process: its own pools, the same datastores and
    peers; anything pending is stale to it at once."""
    url = sale.databases["payment"]
    engine = create_engine(url, pool_size=3)
    reads = await ReadSession.open(url, pool_size=1)
    try:
        async with service_client("order_service", sale.url("order"),
                                  signer=signer("payment_service"), timeout_seconds=5) as orders, \
                service_client("card_processor", sale.url(SIMULATOR), signer=None,
                               timeout_seconds=5) as processor:
            transactions = Transactions(create_sessionmaker(engine), PaymentRepository)
            outcomes = PaymentOutcomes(transactions=transactions, reads=reads,
                                       orders=OrdersClient(orders),
                                       processor=HttpProcessor(processor))
            yield PaymentRecovery(transactions=transactions, reads=reads, outcomes=outcomes,
                                  stale_after=timedelta(0))
    finally:
        await reads.close()
        await engine.dispose()


@pytest.fixture
async def calm_afterwards(http: httpx.AsyncClient, sale: Sale) -> AsyncIterator[None]:
    yield
    await set_faults(http, sale, **CALM)


async def paid_orders(http: httpx.AsyncClient, sale: Sale, count: int) -> list[dict[str, Any]]:
    product = await register_product(http, sale, total=count)

    async def bought() -> dict[str, Any]:
        buyer = user()
        order_id = (await order(http, sale, user=buyer, product=product)).json()["id"]
        answer = await pay(http, sale, user=buyer, order_id=order_id)
        assert answer.status_code == 201, answer.text
        return {"buyer": buyer, "order_id": order_id, **answer.json()}

    # At once: with every charge left pending, each payment takes its whole budget.
    return list(await asyncio.gather(*(bought() for _ in range(count))))


async def test_two_replicas_delivering_one_outbox_at_once_pay_each_order_once(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine],
    calm_afterwards: None
) -> None:
    await set_faults(http, sale, decline_rate=0)
    paid = await paid_orders(http, sale, 6)
    assert {p["status"] for p in paid} == {"succeeded"}
    # As if order_service had not heard of any of them: both replicas' outbox rounds find all.
    async with engines["payment"].begin() as conn:
        await conn.execute(text(
            "UPDATE payment_outbox SET delivered_at = NULL, created_at = :old "
            "WHERE payment_id IN :ids").bindparams(bindparam("ids", expanding=True)),
            {"old": utcnow() - timedelta(minutes=1), "ids": [p["id"] for p in paid]})
    async with payment_replica(sale) as one, payment_replica(sale) as other:
        await asyncio.gather(one.deliver_undelivered(), other.deliver_undelivered())
    for payment in paid:
        seen = (await get_order(http, sale, user=payment["buyer"],
                                order_id=payment["order_id"])).json()
        assert seen["status"] == "paid"
        (charge,) = await charges_of(http, sale, payment["id"])
        assert charge["status"] == "succeeded"  # told twice, never voided
    async with engines["payment"].connect() as conn:
        undelivered = (await conn.execute(text(
            "SELECT COUNT(*) FROM payment_outbox WHERE delivered_at IS NULL "
            "AND payment_id IN :ids").bindparams(bindparam("ids", expanding=True)),
            {"ids": [p["id"] for p in paid]})).scalar_one()
    assert undelivered == 0


async def test_two_replicas_failing_stale_payments_at_once_fail_and_void_each_once(
    http: httpx.AsyncClient, sale: Sale, engines: dict[str, AsyncEngine], calm_afterwards: None
) -> None:
    # The processor leaves every charge pending: each POST fails it at the end of its budget.
    await set_faults(http, sale, decline_rate=0, pending_rate=1, pending_ms=600_000)
    payments = await paid_orders(http, sale, 4)
    # As a process that died mid-charge leaves them: pending, with a charge taken.
    async with engines["payment"].begin() as conn:
        await conn.execute(text(
            "UPDATE payments SET status = 'pending', failure_code = NULL, void_owed = 0 "
            "WHERE id IN :ids").bindparams(bindparam("ids", expanding=True)),
            {"ids": [p["id"] for p in payments]})
    async with payment_replica(sale) as one, payment_replica(sale) as other:
        await asyncio.gather(one.fail_stale_pending(), other.fail_stale_pending())
        await asyncio.gather(one.void_owed_charges(), other.void_owed_charges())
    for payment in payments:
        seen = (await http.get(sale.url("payment") + f"/api/v1/payments/{payment['id']}",
                               headers=identity_headers(payment["buyer"]))).json()
        assert (seen["status"], seen["failure_code"]) == ("failed", "interrupted")
        (charge,) = await charges_of(http, sale, payment["id"])
        assert charge["status"] == "voided"
        status = (await get_order(http, sale, user=payment["buyer"],
                                  order_id=payment["order_id"])).json()["status"]
        # Still payable until its deadline (the sale's short TTL may have passed meanwhile):
        # never paid by a payment whose charge was voided.
        assert status in ("pending_payment", "expired")
