"""payment_service against the card processor simulator as a process of its own: lost answers
asked for again with the same key, pending charges decided by signed webhooks (twice, out of
order), forged or stale webhooks refused, and no simulator in production unless allowed."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from payment_service.app import refuse_simulator_in_production
from payment_service.payments.processor import HttpProcessor
from payment_service.payments.processor_api import (
    DEVELOPMENT_WEBHOOK_SECRET,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    webhook_signature,
)
from payment_service.settings import Settings
from shared.http import service_client
from shared.testing.identity import identity_headers
from shared.testing.sale import SIMULATOR, Sale, register_product
from shared.testing.sale_flow import get_order, order, pay

CALM = {"latency_ms": 0, "timeout_rate": 0, "lost_answer_rate": 0, "pending_rate": 0,
        "decline_rate": 0.2, "webhook_duplicate_rate": 0, "webhook_reorder_rate": 0}


def user() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


@pytest.fixture
async def faults(http: httpx.AsyncClient, sale: Sale) -> AsyncIterator[Any]:
    """Sets the simulator's faults for one test; calm again afterwards."""
    async def put(**changes: Any) -> None:
        answer = await http.put(sale.url(SIMULATOR) + "/_sim/faults", json=changes)
        assert answer.status_code == 200, answer.text

    yield put
    await put(**CALM)


async def charges_of(http: httpx.AsyncClient, sale: Sale, payment_id: int) -> list[dict[str, Any]]:
    items = (await http.get(sale.url(SIMULATOR) + "/_sim/charges")).json()["items"]
    return [item for item in items if item["reference"].startswith(f"payment:{payment_id}:")]


async def new_order(http: httpx.AsyncClient, sale: Sale, buyer: int) -> int:
    product = await register_product(http, sale, total=5, price=7_000)
    created = await order(http, sale, user=buyer, product=product)
    assert created.status_code == 201, created.text
    order_id: int = created.json()["id"]
    return order_id


async def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.1)


async def test_each_payment_is_one_charge_at_the_processor(
    http: httpx.AsyncClient, sale: Sale
) -> None:
    buyer = user()
    paid = (await pay(http, sale, user=buyer, order_id=await new_order(http, sale, buyer))).json()
    charges = await charges_of(http, sale, paid["id"])
    assert [(c["status"], c["amount"]) for c in charges] == [("succeeded", 7_000)]
    assert charges[0]["reference"] == f"payment:{paid['id']}:order:{paid['order_id']}"


async def test_lost_answers_are_asked_again_with_the_same_key_and_never_charge_twice(
    http: httpx.AsyncClient, sale: Sale, faults: Any
) -> None:
    # Every answer lost, or every other: the charge is taken once (the same key each time).
    # With no answer at all the payment is decided by the charge's webhook if it comes in
    # time, else it fails (interrupted) and its charge is voided: never a failed payment with
    # a charge standing, nor a succeeded one without.
    for rate in (1, 1, 1, 0.5, 0.5, 0.5, 0.5):
        await faults(lost_answer_rate=rate)
        buyer = user()
        order_id = await new_order(http, sale, buyer)
        answer = await pay(http, sale, user=buyer, order_id=order_id)
        assert answer.status_code == 201, answer.text
        body = answer.json()
        charges = await charges_of(http, sale, body["id"])
        assert len(charges) == 1
        if body["status"] == "succeeded":
            assert charges[0]["status"] == "succeeded"
            assert (await get_order(http, sale, user=buyer, order_id=order_id)).json()[
                "status"] == "paid"
        else:
            assert charges[0]["status"] in ("voided", "declined")


async def test_a_pending_charge_is_waited_for_within_the_budget_never_answered_pending(
    http: httpx.AsyncClient, sale: Sale, faults: Any
) -> None:
    await faults(pending_rate=1, pending_ms=300)
    buyer = user()
    quick = await pay(http, sale, user=buyer, order_id=await new_order(http, sale, buyer))
    assert quick.json()["status"] == "succeeded", quick.text

    # Decided 3 s later, by its webhook (sent twice, some held back) or by asking: the POST
    # waits for it (API.md: succeeded or failed), and the order is paid when it answers.
    await faults(pending_rate=1, pending_ms=3_000, webhook_duplicate_rate=1,
                 webhook_reorder_rate=0.5)
    buyer = user()
    order_id = await new_order(http, sale, buyer)
    slow = await pay(http, sale, user=buyer, order_id=order_id)
    assert (slow.status_code, slow.json()["status"]) == (201, "succeeded"), slow.text
    assert (await get_order(http, sale, user=buyer, order_id=order_id)).json()[
        "status"] == "paid"
    assert [c["status"] for c in await charges_of(http, sale, slow.json()["id"])] == [
        "succeeded"]


async def test_a_charge_undecided_past_the_budget_fails_interrupted_and_is_voided(
    http: httpx.AsyncClient, sale: Sale, faults: Any
) -> None:
    await faults(pending_rate=1, pending_ms=20_000)
    buyer = user()
    order_id = await new_order(http, sale, buyer)
    started = time.monotonic()
    answer = await pay(http, sale, user=buyer, order_id=order_id)
    # Within the payment's budget (8 s, below the gateway's 10 s), as the contract's failed.
    assert time.monotonic() - started < 9.5
    assert answer.status_code == 201, answer.text
    assert (answer.json()["status"], answer.json()["failure_code"]) == ("failed", "interrupted")
    # Nothing charged (voided ahead: the processor's late outcome is refused), and the order
    # stays payable until its deadline (not payment_failed).
    assert [c["status"] for c in await charges_of(http, sale, answer.json()["id"])] == ["voided"]
    assert (await get_order(http, sale, user=buyer, order_id=order_id)).json()[
        "status"] in ("pending_payment", "expired")  # the test sale's orders live 10 s


async def webhook(http: httpx.AsyncClient, sale: Sale, event: dict[str, Any], *,
                  secret: str = DEVELOPMENT_WEBHOOK_SECRET,
                  timestamp: int | None = None) -> httpx.Response:
    body = json.dumps(event).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    return await http.post(sale.url("payment") + "/webhooks/processor", content=body, headers={
        "Content-Type": "application/json", TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: webhook_signature(secret.encode(), stamp, body)})


async def test_forged_stale_and_repeated_webhooks_change_nothing(
    http: httpx.AsyncClient, sale: Sale
) -> None:
    buyer = user()
    failed = (await pay(http, sale, user=buyer, order_id=await new_order(http, sale, buyer),
                        card="4000000000000002")).json()
    charge = (await charges_of(http, sale, failed["id"]))[0]
    lie = {"id": "evt_forged", "type": "charge.succeeded",
           "charge": {**charge, "status": "succeeded", "failure_code": None}}
    forged = await webhook(http, sale, lie, secret="not-the-secret-" * 3)
    assert (forged.status_code, forged.json()["code"]) == (401, "invalid_signature")
    stale = await webhook(http, sale, lie, timestamp=int(time.time()) - 3_600)
    assert stale.status_code == 401
    unsigned = await http.post(sale.url("payment") + "/webhooks/processor", json=lie)
    assert unsigned.status_code == 401
    # Signed and recent, but about a payment already decided: acknowledged, nothing moves.
    assert (await webhook(http, sale, {**lie, "charge": charge})).status_code == 200
    url = sale.url("payment") + f"/api/v1/payments/{failed['id']}"
    assert (await http.get(url, headers=identity_headers(buyer))).json() == failed
    garbage = await webhook(http, sale, {"id": "x"})
    assert garbage.status_code == 422


async def test_production_refuses_the_simulator_unless_told(sale: Sale) -> None:
    async with service_client("card_processor", sale.url(SIMULATOR), signer=None,
                              timeout_seconds=2) as client:
        processor = HttpProcessor(client)
        production = Settings.model_construct(environment="production",
                                              allow_simulated_processor=False)
        with pytest.raises(RuntimeError, match="simulator"):
            await refuse_simulator_in_production(processor, production)
        allowed = Settings.model_construct(environment="production",
                                           allow_simulated_processor=True)
        await refuse_simulator_in_production(processor, allowed)
        await refuse_simulator_in_production(processor, Settings.model_construct(
            environment="development", allow_simulated_processor=False))
    async with service_client("card_processor", "http://127.0.0.1:9", signer=None,
                              timeout_seconds=1) as client:
        with pytest.raises(RuntimeError, match="did not say"):
            await refuse_simulator_in_production(HttpProcessor(client), production)
    # A processor without the simulator's /v1/processor route (here: order_service) is not it.
    async with service_client("card_processor", sale.url("order"), signer=None,
                              timeout_seconds=2) as client:
        await refuse_simulator_in_production(HttpProcessor(client), production)
