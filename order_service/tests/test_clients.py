"""order_service's clients against stand-ins answering over real HTTP.

payment_service: a refund is done when payment_service refunded the charge or states that none
exists, and not when a 404 says only that something was not found (issue 16, defect 1).
stock_service: the reserves of a product asked in one turn go in one call, in the order asked,
and each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from order_service.clients import PaymentsClient, StockClient
from order_service.orders.errors import StockUnavailable
from shared.errors import ProblemError
from shared.http import service_client
from shared.internal.payments import by_order_path
from shared.internal.stock import PurchaseLimitExceeded, SoldOut, holds_path
from shared.testing.identity import signer
from shared.testing.net import ThreadedServer

ANSWERS = {1: (200, {"id": 5, "order_id": 1, "status": "refunded", "lease_token": "a" * 32}),
           2: (404, {"code": "no_charge", "status": 404}),
           3: (404, {"code": "not_found", "status": 404}),
           4: (409, {"code": "charge_pending", "status": 409})}


@pytest.fixture(scope="module")
def payments_stand_in() -> Iterator[str]:
    app = FastAPI()
    for order_id, (status, body) in ANSWERS.items():
        async def answer(status: int = status, body: dict[str, object] = body) -> JSONResponse:
            return JSONResponse(body, status_code=status)
        app.add_api_route(by_order_path(order_id, "refund"), answer, methods=["POST"])
    server = ThreadedServer(app).start()
    yield server.url
    server.stop()


async def test_a_refund_is_done_only_when_refunded_or_stated_chargeless(
    payments_stand_in: str
) -> None:
    async with service_client("payment_service", payments_stand_in, signer=signer("order_service"),
                              timeout_seconds=2) as client:
        payments = PaymentsClient(client)
        assert await payments.refund(1) is True
        assert await payments.refund(2) is True
        assert await payments.refund(3) is False
        assert await payments.refund(4) is False
        assert await payments.refund(99) is False  # no such route: 404 with no code


# The stand-in's answer to each reserve, by order id: a hold, a refusal, or a 503.
HELD, REFUSED, LIMITED, REBUILDING = 1, 2, 3, 4
# A product whose batches the stand-in fails whole, and one it answers slowly.
BROKEN_PRODUCT = 99
SLOW_PRODUCT = 98


def _answer(product_id: int, ask: dict[str, Any]) -> dict[str, Any]:
    order_id = ask["order_id"]
    if order_id % 10 == HELD:
        return {"order_id": order_id, "status": 200, "hold": {
            "order_id": order_id, "product_id": product_id, "user_id": ask["user_id"],
            "quantity": ask["quantity"], "unit_price": 700, "state": "held",
            "expires_at": ask["expires_at"], "created_at": "2026-12-07T10:00:00Z"}}
    if order_id % 10 == REFUSED:
        return {"order_id": order_id, "status": 409, "code": "sold_out", "detail": "gone"}
    if order_id % 10 == LIMITED:
        return {"order_id": order_id, "status": 409, "code": "purchase_limit_exceeded"}
    return {"order_id": order_id, "status": 503, "code": "upstream_unavailable"}


# Every batch the stand-in was sent: (product id, the asks).
Batches = list[tuple[int, list[dict[str, Any]]]]


@pytest.fixture
def stock_stand_in() -> Iterator[tuple[str, Batches]]:
    """Its URL, and every batch it was sent: (product id, the asks)."""
    batches: Batches = []
    app = FastAPI()

    @app.post(holds_path(0).replace("/0/", "/{product_id}/"))
    async def reserve_many(product_id: int, request: Request) -> JSONResponse:
        asks = (await request.json())["holds"]
        batches.append((product_id, asks))
        if product_id == SLOW_PRODUCT:
            await asyncio.sleep(0.3)
        if product_id == BROKEN_PRODUCT:
            return JSONResponse({"code": "internal_error", "status": 500}, status_code=500)
        return JSONResponse({"answers": [_answer(product_id, ask) for ask in reversed(asks)]})

    server = ThreadedServer(app).start()
    yield server.url, batches
    server.stop()


@pytest.fixture
async def stock_batches(stock_stand_in: tuple[str, Batches]
                        ) -> AsyncIterator[tuple[StockClient, Batches]]:
    """A StockClient of the stand-in, and the batches the stand-in was sent."""
    url, batches = stock_stand_in
    async with service_client("stock_service", url, signer=signer("order_service"),
                              timeout_seconds=2) as client:
        yield StockClient(client), batches


async def _outcome(stock: StockClient, product_id: int, order_id: int,
                   resent: bool = False) -> str:
    try:
        hold = await stock.reserve(product_id=product_id, order_id=order_id, user_id=order_id,
                                   quantity=1, expires_at=datetime(2026, 12, 7, 10, 10),
                                   resent=resent)
    except ProblemError as problem:
        return f"{type(problem).__name__} {problem.detail}"
    return f"{hold.state} {hold.order_id} at {hold.unit_price}"


async def test_reserves_asked_at_once_go_in_one_call_each_answered_its_own(
    stock_batches: tuple[StockClient, Batches]
) -> None:
    stock, batches = stock_batches
    outcomes = [*await asyncio.gather(
        _outcome(stock, 5, 11), _outcome(stock, 5, 12), _outcome(stock, 5, 13),
        _outcome(stock, 5, 14, resent=True), _outcome(stock, 6, 21))]
    assert outcomes == ["held 11 at 700", f"{SoldOut.__name__} gone",
                        f"{PurchaseLimitExceeded.__name__} {PurchaseLimitExceeded.title}",
                        f"{StockUnavailable.__name__} {StockUnavailable().detail}",
                        "held 21 at 700"]
    # One call per product, the asks in the order made (answered in another order).
    assert [(product, [ask["order_id"] for ask in asks]) for product, asks in batches] == [
        (5, [11, 12, 13, 14]), (6, [21])]
    assert [ask["resent"] for ask in batches[0][1]] == [False, False, False, True]
    assert batches[0][1][0]["expires_at"] == "2026-12-07T10:10:00Z"

    # The same order asked twice at once goes in two calls, answered alike.
    batches.clear()
    assert [*await asyncio.gather(_outcome(stock, 5, 31), _outcome(stock, 5, 31))] == \
        ["held 31 at 700"] * 2
    assert [len(asks) for _, asks in batches] == [1, 1]


async def test_a_batch_that_fails_whole_fails_each_reserve_as_unavailable(
    stock_batches: tuple[StockClient, Batches]
) -> None:
    stock, batches = stock_batches
    outcomes = await asyncio.gather(_outcome(stock, BROKEN_PRODUCT, 41),
                                    _outcome(stock, BROKEN_PRODUCT, 42))
    assert [outcome.split()[0] for outcome in outcomes] == [StockUnavailable.__name__] * 2
    assert len(batches) == 1


async def test_reserves_asked_while_a_batch_is_in_flight_go_together_after_it(
    stock_batches: tuple[StockClient, Batches]
) -> None:
    stock, batches = stock_batches
    first = asyncio.create_task(_outcome(stock, SLOW_PRODUCT, 51))
    await asyncio.sleep(0.1)  # its batch is at the stand-in now
    later = [asyncio.create_task(_outcome(stock, SLOW_PRODUCT, order))
             for order in (61, 62, 63)]
    gone = asyncio.create_task(_outcome(stock, SLOW_PRODUCT, 71))
    await asyncio.sleep(0)
    gone.cancel()  # its caller left before its batch went: not sent
    await asyncio.sleep(0.05)
    assert [[ask["order_id"] for ask in asks] for _, asks in batches] == [[51]]
    assert await first == "held 51 at 700"
    assert [await task for task in later] == ["held 61 at 700", f"{SoldOut.__name__} gone",
                                              f"{PurchaseLimitExceeded.__name__} "
                                              f"{PurchaseLimitExceeded.title}"]
    assert [[ask["order_id"] for ask in asks] for _, asks in batches] == [[51], [61, 62, 63]]
    assert stock._reserves == {}  # nothing kept once answered
