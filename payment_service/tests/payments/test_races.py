"""Issue 16, defect 1: the stale-payment loop against a charge slower than its bound, and an
order paid only by the payment holding its lease; a refund is done only when payment_service
says no charge exists."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.internal.orders import order_path
from shared.internal.payments import by_order_path
from shared.testing.identity import identity_headers, service_identity_headers
from shared.testing.sale import SIMULATOR, Sale, register_product
from shared.testing.sale_flow import get_order, order, pay

CALM = {"latency_ms": 0, "timeout_rate": 0, "lost_answer_rate": 0, "pending_rate": 0,
        "decline_rate": 0.2, "webhook_duplicate_rate": 0, "webhook_reorder_rate": 0,
        "reorder_ms": 1_500}


def internal(caller: str) -> dict[str, str]:
    """Signed as payment_service and order_service sign their calls to each other (`caller`:
    the one calling; internal routes name the callers they answer)."""
    return service_identity_headers(caller)


def user() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


async def set_faults(http: httpx.AsyncClient, sale: Sale, **changes: Any) -> None:
    answer = await http.put(sale.url(SIMULATOR) + "/_sim/faults", json=changes)
    assert answer.status_code == 200, answer.text


async def charges_of(http: httpx.AsyncClient, sale: Sale, payment_id: int) -> list[dict[str, Any]]:
    items = (await http.get(sale.url(SIMULATOR) + "/_sim/charges")).json()["items"]
    return [item for item in items if item["reference"].startswith(f"payment:{payment_id}:")]


@pytest.fixture
async def impatient_reaper(http: httpx.AsyncClient, sale: Sale) -> AsyncIterator[None]:
    """payment_service's stale-payment loop cuts a payment short after 1 s, while it waits up
    to 8 s for the processor's answer; webhooks are held back 8 s."""
    sale.restart("payment", PAYMENT_STALE_AFTER_SECONDS="1", PAYMENT_STALE_INTERVAL_SECONDS="0.2",
                 PAYMENT_PROCESSOR_TIMEOUT_SECONDS="8", PAYMENT_PROCESSOR_ATTEMPTS="1")
    try:
        yield
    finally:
        await set_faults(http, sale, **CALM)
        sale.restart("payment")


async def test_a_charge_slower_than_the_stale_bound_never_pays_an_order_with_a_voided_charge(
    http: httpx.AsyncClient, sale: Sale, impatient_reaper: None
) -> None:
    # The charge is taken at once and answered after 3 s; its webhook comes after 8 s.
    await set_faults(http, sale, timeout_rate=1, timeout_ms=3_000, webhook_reorder_rate=1,
                     reorder_ms=8_000)
    buyer = user()
    product = await register_product(http, sale, total=2)
    order_id = (await order(http, sale, user=buyer, product=product)).json()["id"]
    answer = await pay(http, sale, user=buyer, order_id=order_id)
    assert answer.status_code in (201, 409), answer.text
    await asyncio.sleep(1.0)
    payment_id = int((await http.get(sale.url("payment") + by_order_path(order_id),
                                     headers=internal("order_service"))).json()["id"])
    (charge,) = await charges_of(http, sale, payment_id)
    payment = (await http.get(sale.url("payment") + f"/api/v1/payments/{payment_id}",
                              headers=identity_headers(buyer))).json()
    status = (await get_order(http, sale, user=buyer, order_id=order_id)).json()["status"]
    # The loop failed the payment first and voided its charge; the late answer found the
    # payment no longer pending and neither paid the order nor kept the charge.
    assert charge["status"] == "voided"
    assert (payment["status"], payment["failure_code"]) == ("failed", "interrupted")
    assert status == "pending_payment"
    if answer.status_code == 201:
        assert answer.json()["status"] == "failed"


async def test_only_the_payment_holding_the_lease_pays_the_order(
    http: httpx.AsyncClient, sale: Sale
) -> None:
    buyer = user()
    product = await register_product(http, sale, total=2)
    order_id = (await order(http, sale, user=buyer, product=product)).json()["id"]
    lease = await http.post(sale.url("order") + order_path(order_id, "payment-lease"),
                            json={"user_id": buyer}, headers=internal("payment_service"))
    token = lease.json()["lease_token"]
    first = await http.post(sale.url("order") + order_path(order_id, "paid"),
                            json={"payment_id": 901, "lease_token": token},
                            headers=internal("payment_service"))
    assert first.status_code == 200, first.text
    again = await http.post(sale.url("order") + order_path(order_id, "paid"),
                            json={"payment_id": 901, "lease_token": token},
                            headers=internal("payment_service"))
    assert again.status_code == 200, "idempotent for the payment that paid"
    other = await http.post(sale.url("order") + order_path(order_id, "paid"),
                            json={"payment_id": 902, "lease_token": token},
                            headers=internal("payment_service"))
    assert other.status_code == 409, other.text
    assert other.json()["code"] == "invalid_state"


async def test_a_refund_is_done_only_when_no_charge_exists(
    http: httpx.AsyncClient, sale: Sale
) -> None:
    never_paid = await http.post(sale.url("payment") + by_order_path(2**53 - 7, "refund"),
                                 headers=internal("order_service"))
    assert (never_paid.status_code, never_paid.json()["code"]) == (404, "no_charge")

    await set_faults(http, sale, pending_rate=1, pending_ms=60_000)
    try:
        buyer = user()
        product = await register_product(http, sale, total=2)
        order_id = (await order(http, sale, user=buyer, product=product)).json()["id"]
        paying = asyncio.create_task(pay(http, sale, user=buyer, order_id=order_id))
        # While the POST waits for the processor's decision, the payment is pending.
        for _ in range(50):
            if (await http.get(sale.url("payment") + by_order_path(order_id),
                               headers=internal("order_service"))).status_code == 200:
                break
            await asyncio.sleep(0.1)
        undecided = await http.post(sale.url("payment") + by_order_path(order_id, "refund"),
                                    headers=internal("order_service"))
        # A charge may yet succeed: not "no charge", so order_service asks again later.
        assert undecided.status_code == 409, undecided.text
        # Given up on at the budget's end: failed, its charge voided; now there is none.
        assert (await paying).json()["failure_code"] == "interrupted"
        voided = await http.post(sale.url("payment") + by_order_path(order_id, "refund"),
                                 headers=internal("order_service"))
        assert (voided.status_code, voided.json()["code"]) == (404, "no_charge")
    finally:
        await set_faults(http, sale, **CALM)

