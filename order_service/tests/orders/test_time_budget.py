"""Issue 16, defect 8: every wait on the order path ends before the gateway's upstream timeout
(10 s), so the gateway never gives up on an order that is still being made. stock_service is
stopped (SIGSTOP, a process this suite started) while a queue forms behind the one reserve of a
product allowed in flight, with a call timeout (8 s) that is itself below the gateway's: each
order is answered in time, with an order or a 503, whatever the waits add up to."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from shared.testing.sale import Sale, register_product
from shared.testing.sale_flow import decided, order

GATEWAY_UPSTREAM_TIMEOUT_SECONDS = 10.0


def user() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


@pytest.fixture
def one_reserve_in_flight(sale: Sale) -> Iterator[None]:
    sale.restart("order", ORDER_RESERVES_IN_FLIGHT_PER_PRODUCT="1",
                 ORDER_CALL_TIMEOUT_SECONDS="8")
    try:
        yield
    finally:
        sale.restart("order")


async def test_a_queue_behind_a_stalled_stock_service_is_answered_before_the_gateway_gives_up(
    http: httpx.AsyncClient, sale: Sale, one_reserve_in_flight: None
) -> None:
    product = await register_product(http, sale, total=5)
    stock = sale.processes["stock"].process
    assert stock is not None

    responses: list[httpx.Response] = []

    async def timed_order() -> tuple[float, int]:
        started = time.monotonic()
        answer = await order(http, sale, user=user(), product=product)
        responses.append(answer)
        return time.monotonic() - started, answer.status_code

    stock.send_signal(signal.SIGSTOP)
    try:
        first = asyncio.create_task(timed_order())
        await asyncio.sleep(2.0)  # the first holds the product's one reserve slot
        answers = await asyncio.gather(first, timed_order(), timed_order())
    finally:
        stock.send_signal(signal.SIGCONT)
    for seconds, status in answers:
        # The ones behind the slot take a place in the line (202) instead of waiting.
        assert status in (201, 202, 503), status
        # A margin for the way back through the gateway on a busy machine.
        assert seconds < GATEWAY_UPSTREAM_TIMEOUT_SECONDS - 1.0, answers
    # Every place gets its answer once stock_service is back (an order, or the 503 it met).
    for final in await decided(http, sale, responses):
        assert final.status_code in (201, 503), final.text
