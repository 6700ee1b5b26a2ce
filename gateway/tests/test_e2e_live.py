"""The live stock and the sold-out answer at the edge, through the real system: the gateway
answers a sold-out product's orders itself, and forwards again the moment a unit comes back
(here: an order that expires unpaid, its payment window shortened to 2 s)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.tests.e2e import (
    System,
    User,
    client_at,
    new_client_address,
    new_seller,
    new_user,
    running_system,
)
from shared.testing.mail import MailSink
from shared.testing.problems import assert_problem

PAYMENT_TTL_SECONDS = 2


@pytest.fixture(scope="module")
def system(mail_sink: MailSink, redis_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    logs: Path = tmp_path_factory.mktemp("e2e-live-logs")
    with running_system(mail_sink, redis_url, logs, overrides={
            "order": {"ORDER_PAYMENT_TTL_SECONDS": str(PAYMENT_TTL_SECONDS)}}) as running:
        yield running


async def order(api: httpx.AsyncClient, buyer: User, product_id: int) -> httpx.Response:
    return await api.post("/api/v1/orders", json={"product_id": product_id, "quantity": 1},
                          headers=buyer.headers)


async def remaining(api: httpx.AsyncClient, product_id: int) -> int:
    response = await api.get(f"/api/v1/products/{product_id}/stock")
    assert response.status_code == 200, response.text
    return int(response.json()["remaining"])


async def test_sold_out_is_answered_at_the_edge_until_an_expired_order_gives_its_unit_back(
        system: System) -> None:
    async with client_at(system, new_client_address()) as api:
        seller = await new_seller(api, system)
        first, second = [await new_user(api, system) for _ in range(2)]
        created = await api.post("/api/v1/products", headers=seller.headers, json={
            "name": "Last one", "description": "", "price": 1_000, "stock": 1,
            "kind": "general"})
        assert created.status_code == 201, created.text
        product_id = int(created.json()["id"])
        events: list[dict[str, object]] = []

        async def follow() -> None:
            async with api.stream("GET", f"/api/v1/products/{product_id}/live") as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line.removeprefix("data: ")))

        following = asyncio.create_task(follow())
        try:
            held = await order(api, first, product_id)
            assert held.status_code == 201, held.text
            # order_service logs the requests it answers (what tells the edge's apart).
            await system.wait_for_logged(held.headers["x-request-id"], "order")
            # Answered by the gateway alone once stock_service's answer has reached it.
            deadline = time.monotonic() + 5
            while True:
                refused = await order(api, second, product_id)
                assert_problem(refused, 409, "sold_out")
                request_id = refused.headers["x-request-id"]
                await system.wait_for_logged(request_id, "gateway")
                if request_id not in system.log("order"):
                    break
                assert time.monotonic() < deadline, "never answered at the edge"
                await asyncio.sleep(0.05)
            # The first order expires unpaid: the moment the unit shows, an order gets it.
            deadline = time.monotonic() + PAYMENT_TTL_SECONDS + 10
            while await remaining(api, product_id) == 0:
                assert time.monotonic() < deadline, "the unpaid order never expired"
                await asyncio.sleep(0.02)
            bought = await order(api, second, product_id)
            assert bought.status_code == 201, bought.text
            await asyncio.sleep(0.3)
            assert [event["remaining"] for event in events][:1] == [1]
            assert 0 in [event["remaining"] for event in events]
            assert events[-1]["remaining"] == 0
            assert any(event["remaining"] == 1 for event in events[1:])
        finally:
            following.cancel()
