"""The line across two order_service replicas (one reserve slot per product each) over the same
Redis, MariaDB and stock_service, asked over loopback HTTP as the gateway would ask them.

Whether a request joins the line or goes straight on is judged against the line in Redis, not
against what the replica happens to have heard: replica B below never hears replica A's line
open (another pub/sub prefix, as a replica that has not heard it yet), and still a later
arrival at B takes its place behind A's waiting buyers instead of going past them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from order_service.orders.line import new_ticket
from order_service.orders.scripts import LineScripts, NewPlace
from order_service.tests.orders.test_line import (
    buyer,
    final_answer,
    now_us,
    post_order,
)
from shared.services import service
from shared.testing.identity import identity_headers, sign_at_send
from shared.testing.net import ServiceProcess
from shared.testing.sale import Sale, register_product

ORDERS = "/api/v1/orders"
# A place whose replica died is decided again after its lease (above the create budget).
SHORT_LEASES = {"ORDER_LINE_LEASE_SECONDS": "4", "ORDER_CREATE_BUDGET_SECONDS": "3",
                "ORDER_LINE_SWEEP_INTERVAL_SECONDS": "0.5"}


@contextmanager
def _replica(sale: Sale, name: str, factory: str, **env: str) -> Iterator[ServiceProcess]:
    """One more order_service process on the sale's settings, short leases and `env`, running
    until the block ends."""
    process = ServiceProcess(name, factory, env={**sale.environments["order"], **SHORT_LEASES,
                                                 **env}, log_dir=sale.logs).start()
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def two_replicas(sale: Sale) -> Iterator[ServiceProcess]:
    """The sale's order_service (A) and a second replica (B) with its own pub/sub prefix, one
    reserve slot per product each."""
    sale.restart("order", ORDER_RESERVES_IN_FLIGHT_PER_PRODUCT="1", **SHORT_LEASES)
    try:
        with _replica(sale, "order-b", service("order").factory,
                      ORDER_RESERVES_IN_FLIGHT_PER_PRODUCT="1",
                      PUBSUB_PREFIX=f"deaf-{os.urandom(4).hex()}:") as other:
            yield other
    finally:
        sale.restart("order")


@pytest.fixture
def dying_replica(sale: Sale, two_replicas: ServiceProcess) -> Iterator[ServiceProcess]:
    """A replica that exits right after its first reserve (order_service/tests/faults.py)."""
    with _replica(sale, "order-dying", "order_service.tests.faults:create_app_with_fault",
                  ORDER_TEST_FAULT="after_reserve") as dying:
        yield dying


@pytest.fixture
def settling_replica(sale: Sale, two_replicas: ServiceProcess) -> Iterator[ServiceProcess]:
    """A replica that lets each order settle 0.5 s after its arrival stamp, one place of a
    product decided at a time across replicas."""
    with _replica(sale, "order-settling", service("order").factory,
                  ORDER_LINE_SETTLE_SECONDS="0.5", ORDER_LINE_MAX_DECIDING="1") as settling:
        yield settling


@pytest.fixture
async def http_b(sale: Sale, two_replicas: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    package = service("order").package
    async with httpx.AsyncClient(timeout=20, event_hooks={
            "request": [sign_at_send(lambda _: package)]}) as client:
        yield client


async def test_a_later_arrival_at_a_replica_with_a_free_slot_waits_behind_the_line(
    http_b: httpx.AsyncClient, sale: Sale, http: httpx.AsyncClient, redis: Redis,
    two_replicas: ServiceProcess
) -> None:
    """Five buyers wait in the product's line, joined at another replica whose message that
    the line opened B never hears (the places are taken here, on a channel nobody listens to).
    A later arrival at B, which has its slot free and no drain of the product, still takes its
    place behind them; B drains the line in arrival order, and the three units go to the five's
    first three."""
    product = await register_product(http, sale, total=3)
    elsewhere = LineScripts(redis, keep_ms=900_000, lease_ms=4_000, max_waiting=100,
                            tickets_channel=f"deaf-{os.urandom(4).hex()}",
                            open_channel=f"deaf-{os.urandom(4).hex()}")
    start = now_us()
    waiting = [buyer() for _ in range(5)]
    joined = await elsewhere.join(product, [
        NewPlace(mode="join", ticket=new_ticket(product), user_id=user, quantity=1, key="",
                 key_field="", fingerprint="", arrived_us=start + index)
        for index, user in enumerate(waiting)])
    assert [place.position for place in joined] == [1, 2, 3, 4, 5]
    late = buyer()
    late_answer = await http_b.post(
        two_replicas.url + ORDERS, json={"product_id": product, "quantity": 1},
        headers=identity_headers(late, arrived_at_us=start + 1_000))
    assert late_answer.status_code == 202, late_answer.text
    body: dict[str, Any] = late_answer.json()
    assert body["position"] == 6, body
    finals = [await final_answer(http, sale, user=user, ticket=str(place.ticket))
              for user, place in zip(waiting, joined, strict=True)]
    assert [final["state"] for final in finals] == ["ordered"] * 3 + ["refused"] * 2
    final = await final_answer(http, sale, user=late, ticket=body["ticket"])
    assert final["state"] == "refused", final
    assert final["problem"]["code"] == "sold_out"


async def test_a_retry_with_its_key_after_its_replica_died_keeps_its_place(
    http: httpx.AsyncClient, http_b: httpx.AsyncClient, sale: Sale,
    dying_replica: ServiceProcess
) -> None:
    """A request that went straight on at a replica is a place in the line too (being decided,
    under a lease). Its replica dies after the reserve, holding the buyer's Idempotency-Key and
    the last unit: the buyer's retry at the other replica gets that place back (a ticket),
    which is decided again once its lease and the dead claim on the key run out, and wins the
    unit its request had reserved (given back as an orphan hold meanwhile)."""
    product = await register_product(http, sale, total=1)
    user, key = buyer(), f"key-{os.urandom(6).hex()}"
    body = {"product_id": product, "quantity": 1}
    with pytest.raises(httpx.TransportError):
        await http_b.post(dying_replica.url + ORDERS, json=body,
                          headers={**identity_headers(user, arrived_at_us=now_us()),
                                   "Idempotency-Key": key})
    # A later buyer at the live replica does not take the unit the dead request reserved.
    later = buyer()
    later_answer = await post_order(http, sale, user=later, product=product,
                                    arrived_us=now_us())
    assert later_answer.status_code in (202, 409), later_answer.text
    # The retry, as API.md tells the client: the same key and body, at the live replica; while
    # the dead request's place is under its lease the key is in use, then the place is the
    # retry's (a ticket).
    deadline = time.monotonic() + 30
    while True:
        again = await post_order(http, sale, user=user, product=product, key=key,
                                 arrived_us=now_us())
        if again.status_code != 409 or time.monotonic() > deadline:
            break
        assert again.json()["code"] == "idempotency_key_in_use", again.text
        await asyncio.sleep(float(again.headers["retry-after"]))
    # The place's ticket, or (decided again meanwhile, once its lease ran out) its answer.
    assert again.status_code in (201, 202), again.text
    if again.status_code == 202:
        final = await final_answer(http, sale, user=user, ticket=again.json()["ticket"])
    else:
        final = {"state": "ordered", "order": again.json()}
    assert final["state"] == "ordered", final
    assert final["order"]["user_id"] == user
    # Asked again with the key, the same order.
    replay = await post_order(http, sale, user=user, product=product, key=key)
    assert replay.status_code == 201, replay.text
    assert replay.json() == final["order"]
    if later_answer.status_code == 202:
        later_final = await final_answer(http, sale, user=later,
                                         ticket=later_answer.json()["ticket"])
        assert later_final["state"] == "refused", later_final


async def test_a_request_stamped_earlier_but_delayed_on_its_way_still_comes_first(
    http: httpx.AsyncClient, http_b: httpx.AsyncClient, sale: Sale,
    settling_replica: ServiceProcess
) -> None:
    """Two buyers, one unit. The later-stamped request reaches order_service first, the
    earlier-stamped one 0.2 s after (a gateway busy with a burst reorders it so): each waits
    until its stamp is 0.5 s old, so the earlier goes straight on and wins, and the later
    takes its place behind it."""
    product = await register_product(http, sale, total=1)
    url = settling_replica.url + ORDERS
    body = {"product_id": product, "quantity": 1}
    # Stamped 0.2 s and 0.1 s ago: the later one is sent at once, the earlier 0.2 s after.
    early, late, stamp = buyer(), buyer(), now_us() - 200_000

    async def send(user: int, arrived_us: int, after: float) -> httpx.Response:
        await asyncio.sleep(after)
        return await http_b.post(url, json=body,
                                 headers=identity_headers(user, arrived_at_us=arrived_us))

    late_answer, early_answer = await asyncio.gather(send(late, stamp + 100_000, 0.0),
                                                     send(early, stamp, 0.2))
    assert early_answer.status_code == 201, early_answer.text
    assert late_answer.status_code in (202, 409), late_answer.text
    if late_answer.status_code == 202:
        final = await final_answer(http, sale, user=late, ticket=late_answer.json()["ticket"])
        assert final["state"] == "refused", final
    else:
        assert late_answer.json()["code"] == "sold_out"
