"""The sale's metrics move as the sale happens, scraped from each service's /metrics (the
services' own ports, which only the gateway and the operators reach): an order counts as
created and its hold as held, a sold-out counts under its code, an expiry gives the hold back,
a payment counts by status with the processor's latency, and the per-product stock gauges are
read from Redis at scrape time."""

from __future__ import annotations

import asyncio
import time

import httpx

from shared.testing.identity import identity_headers
from shared.testing.metrics import Scraped, scrape
from shared.testing.sale import PAYMENT_TTL_SECONDS, Sale, register_product
from shared.testing.sale_flow import CARD_DECLINED, order, pay

DECISIONS = "preorder_order_decisions_total"
HOLDS = "preorder_holds_total"


async def metrics_of(http: httpx.AsyncClient, sale: Sale, app: str) -> Scraped:
    return await scrape(http, sale.url(app) + "/metrics")


def stock_of(scraped: Scraped, product: int) -> dict[str, float]:
    return {part: scraped.value(f"preorder_stock_{part}_units", product=str(product))
            for part in ("total", "remaining", "held", "sold")}


async def test_an_order_counts_as_created_and_its_hold_shows_on_the_stock_gauges(
        http: httpx.AsyncClient, sale: Sale) -> None:
    product = await register_product(http, sale, total=5)
    before = await metrics_of(http, sale, "order")
    holds_before = await metrics_of(http, sale, "stock")

    made = await order(http, sale, user=7001, product=product, quantity=2)

    assert made.status_code == 201, made.text
    after = await metrics_of(http, sale, "order")
    created = DECISIONS, {"outcome": "created", "code": ""}
    assert after.value(created[0], **created[1]) - before.value(created[0], **created[1]) == 1
    stock = await metrics_of(http, sale, "stock")
    assert stock.value(HOLDS, event="held") - holds_before.value(HOLDS, event="held") == 1
    assert stock_of(stock, product) == {"total": 5, "remaining": 3, "held": 2, "sold": 0}
    assert stock.value("preorder_redis_up") == 1


async def test_each_refused_order_counts_once_under_its_code(http: httpx.AsyncClient,
                                                             sale: Sale) -> None:
    product = await register_product(http, sale, total=1)
    assert (await order(http, sale, user=7101, product=product)).status_code == 201
    before = await metrics_of(http, sale, "order")

    # The first refusal comes from stock_service; the next ones from the sold-out memory,
    # some of them in front of the router: every one is one decision.
    refused = [await order(http, sale, user=7102 + n, product=product) for n in range(3)]

    assert [r.json()["code"] for r in refused] == ["sold_out"] * 3
    after = await metrics_of(http, sale, "order")
    sold_out = {"outcome": "refused", "code": "sold_out"}
    assert after.value(DECISIONS, **sold_out) - before.value(DECISIONS, **sold_out) == 3
    assert after.value(DECISIONS, outcome="created") == before.value(DECISIONS,
                                                                     outcome="created")


async def test_an_expired_order_counts_and_its_units_come_back(http: httpx.AsyncClient,
                                                               sale: Sale) -> None:
    product = await register_product(http, sale, total=3)
    before = await metrics_of(http, sale, "order")
    stock_before = await metrics_of(http, sale, "stock")
    made = await order(http, sale, user=7201, product=product, quantity=2)
    assert made.status_code == 201, made.text

    deadline = time.monotonic() + PAYMENT_TTL_SECONDS + 10
    while True:
        stock = await metrics_of(http, sale, "stock")
        if stock_of(stock, product)["held"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)

    assert stock_of(stock, product) == {"total": 3, "remaining": 3, "held": 0, "sold": 0}
    assert stock.value(HOLDS, event="released") > stock_before.value(HOLDS, event="released")
    after = await metrics_of(http, sale, "order")
    assert after.value("preorder_orders_expired_total") > before.value(
        "preorder_orders_expired_total")
    # The expiry loop runs every 0.2 s here: its lag stays far below the alert's minute.
    assert 0 <= after.value("preorder_loop_lag_seconds", loop="order_expiry") < 30
    assert after.has("preorder_order_expiry_lag_seconds")


async def test_payments_count_by_status_with_the_processors_latency(
        http: httpx.AsyncClient, sale: Sale) -> None:
    product = await register_product(http, sale, total=4)
    before = await metrics_of(http, sale, "payment")
    stock_before = await metrics_of(http, sale, "stock")
    paid_order = (await order(http, sale, user=7301, product=product)).json()["id"]
    declined_order = (await order(http, sale, user=7302, product=product)).json()["id"]

    paid = await pay(http, sale, user=7301, order_id=paid_order)
    declined = await pay(http, sale, user=7302, order_id=declined_order, card=CARD_DECLINED)

    assert paid.json()["status"] == "succeeded", paid.text
    assert declined.json()["status"] == "failed", declined.text
    after = await metrics_of(http, sale, "payment")
    name = "preorder_payments_total"
    assert after.value(name, status="succeeded") - before.value(name, status="succeeded") == 1
    code = declined.json()["failure_code"]
    assert after.value(name, status="failed", failure_code=code) - before.value(
        name, status="failed", failure_code=code) == 1
    latency = "preorder_processor_request_seconds_count"
    assert after.value(latency, operation="charge", outcome="answered") - before.value(
        latency, operation="charge", outcome="answered") >= 2
    assert after.value(OLDEST := "preorder_payment_oldest_pending_seconds") >= 0
    assert after.has(OLDEST)
    stock = await metrics_of(http, sale, "stock")
    assert stock.value(HOLDS, event="committed") - stock_before.value(
        HOLDS, event="committed") == 1
    assert stock_of(stock, product)["sold"] == 1


async def test_a_webhook_with_a_bad_signature_counts_as_such(http: httpx.AsyncClient,
                                                             sale: Sale) -> None:
    before = await metrics_of(http, sale, "payment")

    response = await http.post(sale.url("payment") + "/webhooks/processor", content=b"{}",
                               headers={"Content-Type": "application/json",
                                        **identity_headers(1)})

    assert response.status_code >= 400
    after = await metrics_of(http, sale, "payment")
    name = "preorder_processor_webhooks_total"
    assert after.value(name, outcome="bad_signature") - before.value(
        name, outcome="bad_signature") == 1
