"""Client steps of the sale (order, pay, cancel) and the invariant check every flow test ends
with: units, holds, orders and payments agree."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.contracts import USER_ID_HEADER
from shared.testing.identity import identity_headers
from shared.testing.sale import Sale

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
# What each order state must have made of its hold and payment, once settled.
HOLD_OF = {"pending_payment": "held", "paid": "committed", "payment_failed": "released",
           "cancelled": "released", "expired": "released", "refunded": "released"}


async def order(http: httpx.AsyncClient, sale: Sale, *, user: int, product: int,
                quantity: int = 1, key: str | None = None,
                body: dict[str, Any] | None = None) -> httpx.Response:
    headers = identity_headers(user) | ({"Idempotency-Key": key} if key else {})
    return await http.post(sale.url("order") + "/api/v1/orders", headers=headers,
                           json=body or {"product_id": product, "quantity": quantity})


async def pay(http: httpx.AsyncClient, sale: Sale, *, user: int, order_id: int,
              card: str = CARD_OK, key: str | None = None) -> httpx.Response:
    headers = identity_headers(user) | ({"Idempotency-Key": key} if key else {})
    return await http.post(sale.url("payment") + "/api/v1/payments", headers=headers,
                           json={"order_id": order_id, "card_number": card})


async def cancel(http: httpx.AsyncClient, sale: Sale, *, user: int,
                 order_id: int) -> httpx.Response:
    return await http.post(sale.url("order") + f"/api/v1/orders/{order_id}/cancel",
                           headers=identity_headers(user))


async def get_order(http: httpx.AsyncClient, sale: Sale, *, user: int,
                    order_id: int) -> httpx.Response:
    return await http.get(sale.url("order") + f"/api/v1/orders/{order_id}", headers=identity_headers(user))


async def decided(http: httpx.AsyncClient, sale: Sale,
                  responses: list[httpx.Response]) -> list[httpx.Response]:
    """Each POST /orders answer as its buyer finally has it: a 202's ticket followed (?wait=)
    to its answer, given as the 201 or the refusal that answer carries. A buyer's repeated
    202s for one ticket are one place: counted once (the first), the others left out; so is a
    ticket whose order a 201 of the list already gave (the buyer's request that went straight
    on held that place)."""
    seen: set[str] = set()
    waiting: list[tuple[int, str]] = []
    kept: list[httpx.Response | int] = []
    for response in responses:
        if response.status_code != 202:
            kept.append(response)
            continue
        ticket = response.json()["ticket"]
        if ticket in seen:
            continue
        seen.add(ticket)
        kept.append(len(waiting))
        waiting.append((int(response.request.headers[USER_ID_HEADER]), ticket))
    # A few at a time: on a busy machine a crowd of long polls can sit in the service's
    # backlog past the signature's age (IDENTITY_MAX_AGE_SECONDS), and be answered 503.
    turns = asyncio.Semaphore(32)

    async def follow(user: int, ticket: str) -> httpx.Response:
        async with turns:
            return await ticket_answer(http, sale, user=user, ticket=ticket)

    answers = await asyncio.gather(*(follow(user, ticket) for user, ticket in waiting))
    # A second request of a buyer whose first went straight on is handed that one's place:
    # its ticket's order is the first's 201, counted once.
    direct = {r.json()["id"] for r in responses if r.status_code == 201}
    return [answers[item] if isinstance(item, int) else item for item in kept
            if not (isinstance(item, int) and answers[item].status_code == 201
                    and answers[item].json()["id"] in direct)]


async def ticket_answer(http: httpx.AsyncClient, sale: Sale, *, user: int,
                        ticket: str) -> httpx.Response:
    """A ticket's answer (within a minute), as the response a buyer would have had at once."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = await http.get(sale.url("order") + f"/api/v1/orders/tickets/{ticket}",
                                  params={"wait": "25"}, headers=identity_headers(user),
                                  timeout=40)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["state"] == "ordered":
            return httpx.Response(201, json=body["order"])
        if body["state"] == "refused":
            return httpx.Response(int(body["problem"]["status"]), json=body["problem"])
    raise AssertionError(f"ticket {ticket} had no answer within a minute")


def codes(responses: list[httpx.Response]) -> Counter[str]:
    """201s by their order's status, refusals by their problem code."""
    return Counter(r.json()["status"] if r.status_code == 201 else r.json()["code"]
                   for r in responses)


def held_or_expired(counts: dict[str, Any], units: int) -> None:
    """`units` orders of one unit each took the whole stock, held until paid; those the test's
    short payment TTL (sale.py) expired before the ledger was read gave theirs back."""
    orders = counts["orders"]
    assert sum(orders.values()) == units
    assert set(orders) <= {"pending_payment", "expired"}
    assert counts["held"] == orders["pending_payment"]
    assert (counts["total"], counts["sold"]) == (units, 0)


async def settled(engines: dict[str, AsyncEngine], redis: Redis, product_id: int, *,
                  timeout: float = 15.0) -> dict[str, Any]:
    """Waits until every effect has landed and Redis agrees with the ledger, then checks that
    units, holds, orders and payments agree; returns the ledger's counts."""
    deadline = time.monotonic() + timeout
    while True:
        problems, counts = await _disagreements(engines, redis, product_id)
        if not problems:
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"product {product_id} never settled: {problems}")
        await asyncio.sleep(0.2)


async def _disagreements(engines: dict[str, AsyncEngine], redis: Redis,
                         product_id: int) -> tuple[list[str], dict[str, Any]]:
    problems: list[str] = []
    async with engines["stock"].connect() as conn:
        total, held, sold = (await conn.execute(text(
            "SELECT total, held, sold FROM stock_products WHERE product_id = :p"),
            {"p": product_id})).one()
        holds: dict[int, str] = dict((await conn.execute(text(
            "SELECT order_id, state FROM stock_holds WHERE product_id = :p"),
            {"p": product_id})).all())
        sums: dict[str, object] = dict((await conn.execute(text(
            "SELECT state, SUM(quantity) FROM stock_holds WHERE product_id = :p GROUP BY state"),
            {"p": product_id})).all())
    async with engines["order"].connect() as conn:
        orders = {order_id: (status, owed) for order_id, status, owed in (await conn.execute(text(
            "SELECT id, status, stock_effect IS NOT NULL OR payment_effect IS NOT NULL "
            "FROM orders WHERE product_id = :p"), {"p": product_id})).all()}
    async with engines["payment"].connect() as conn:
        payments = Counter((order_id, status) for order_id, status in (await conn.execute(text(
            "SELECT order_id, status FROM payments"))).all() if order_id in orders)
    remaining = total - held - sold
    counts = {"total": total, "remaining": remaining, "held": held, "sold": sold,
              "orders": Counter(status for status, _ in orders.values())}
    if (int(str(sums.get("held") or 0)), int(str(sums.get("committed") or 0))) != (held, sold):
        problems.append(f"ledger counters {held}/{sold} vs holds {sums}")
    live = await redis.hmget(f"{{p:{product_id}}}:meta", "remaining", "held", "sold")
    if [int(v or -1) for v in live] != [remaining, held, sold]:
        problems.append(f"redis {live} vs ledger {[remaining, held, sold]}")
    for order_id, (status, owed) in orders.items():
        if owed:
            problems.append(f"order {order_id} still owes effects")
        if holds.get(order_id) != HOLD_OF[status]:
            problems.append(f"order {order_id} {status} but hold {holds.get(order_id)}")
        succeeded = payments[(order_id, "succeeded")]
        if (status == "paid") != (succeeded == 1) or succeeded > 1:
            problems.append(f"order {order_id} {status} with {succeeded} succeeded payments")
        if status == "refunded" and payments[(order_id, "refunded")] != 1:
            problems.append(f"order {order_id} refunded without its payment refunded")
    orphans = [order_id for order_id, state in holds.items()
               if order_id not in orders and state != "released"]
    if orphans:
        problems.append(f"holds with no order: {orphans}")
    return problems, counts
