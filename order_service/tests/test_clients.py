"""order_service's client of payment_service against a stand-in answering over real HTTP: a
refund is done when payment_service refunded the charge or states that none exists, and not
when a 404 says only that something was not found (issue 16, defect 1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from order_service.clients import PaymentsClient
from shared.http import service_client
from shared.internal.payments import by_order_path
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
