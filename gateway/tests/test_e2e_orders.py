"""API.md's "Orders and payments" through the real gateway, as a client sees them: signed-in
users with real tokens, products made through product_service (which registers them with
stock_service), orders held at stock_service and paid through payment_service; all of it
uvicorn processes on loopback with real MariaDB and Redis. The races and crash points are
tested against the same processes behind the gateway in order_service's and payment_service's
own tests; here the contract and the crowd cross the gateway."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.tests.e2e import (
    System,
    User,
    client_at,
    new_client_address,
    new_seller,
    new_user,
)
from shared.testing.problems import assert_problem

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
ORDER_FIELDS = {"id", "user_id", "product_id", "quantity", "unit_price", "amount", "status",
                "expires_at", "created_at"}
PAYMENT_FIELDS = {"id", "order_id", "amount", "status", "failure_code", "created_at"}


@pytest.fixture(scope="module")
async def people(system: System) -> list[User]:
    """A seller, a buyer and a stranger, signed up once for the module."""
    users = []
    for make in (new_seller, new_user, new_user):
        async with client_at(system, new_client_address()) as api:
            users.append(await make(api, system))
    return users


def at(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat().replace("+00:00", "Z")


async def product(api: httpx.AsyncClient, seller: User, *, stock: int, price: int = 25_000,
                  **fields: Any) -> int:
    """A product on sale now (a `general` one) unless `fields` says otherwise."""
    body: dict[str, Any] = {"name": "Drop", "description": "", "price": price, "stock": stock,
                            "kind": "general"} | fields
    response = await api.post("/api/v1/products", json=body, headers=seller.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def remaining(api: httpx.AsyncClient, product_id: int) -> int:
    response = await api.get(f"/api/v1/products/{product_id}/stock")
    assert response.status_code == 200, response.text
    return int(response.json()["remaining"])


async def order(api: httpx.AsyncClient, buyer: User, product_id: int, quantity: int = 1,
                key: str | None = None) -> httpx.Response:
    headers = buyer.headers | ({"Idempotency-Key": key} if key else {})
    return await api.post("/api/v1/orders", json={"product_id": product_id, "quantity": quantity},
                          headers=headers)


async def pay(api: httpx.AsyncClient, buyer: User, order_id: int, card: str = CARD_OK,
              key: str | None = None) -> httpx.Response:
    headers = buyer.headers | ({"Idempotency-Key": key} if key else {})
    return await api.post("/api/v1/payments", json={"order_id": order_id, "card_number": card},
                          headers=headers)


async def status_of(api: httpx.AsyncClient, buyer: User, order_id: int) -> str:
    response = await api.get(f"/api/v1/orders/{order_id}", headers=buyer.headers)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def test_an_order_holds_stock_until_paid_and_each_side_is_its_owners(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, buyer, stranger = people
    product_id = await product(api, seller, stock=5, price=39_000)
    created = await order(api, buyer, product_id, quantity=2)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == ORDER_FIELDS
    assert (body["user_id"], body["product_id"], body["quantity"], body["unit_price"],
            body["amount"], body["status"]) == (buyer.id, product_id, 2, 39_000, 78_000,
                                                "pending_payment")
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    created_at = datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=9) < expires - created_at <= timedelta(minutes=10)  # the default
    assert await remaining(api, product_id) == 3

    read = await api.get(f"/api/v1/orders/{body['id']}", headers=buyer.headers)
    assert (read.status_code, read.json()) == (200, body)
    assert_problem(await api.get(f"/api/v1/orders/{body['id']}", headers=stranger.headers),
                   404, "not_found")
    assert_problem(await pay(api, stranger, body["id"]), 404, "not_found")
    assert_problem(await api.post(f"/api/v1/orders/{body['id']}/cancel",
                                  headers=stranger.headers), 404, "not_found")

    paid = await pay(api, buyer, body["id"])
    assert paid.status_code == 201, paid.text
    payment = paid.json()
    assert set(payment) == PAYMENT_FIELDS
    assert (payment["order_id"], payment["amount"], payment["status"],
            payment["failure_code"]) == (body["id"], 78_000, "succeeded", None)
    assert CARD_OK not in paid.text
    assert await status_of(api, buyer, body["id"]) == "paid"
    assert await remaining(api, product_id) == 3  # sold now, not back
    mine = await api.get(f"/api/v1/payments/{payment['id']}", headers=buyer.headers)
    assert (mine.status_code, mine.json()) == (200, payment)
    assert_problem(await api.get(f"/api/v1/payments/{payment['id']}",
                                 headers=stranger.headers), 404, "not_found")
    assert_problem(await pay(api, buyer, body["id"]), 409, "invalid_state")


async def test_refusals_carry_the_contracts_codes(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, buyer, stranger = people
    assert_problem(await api.post("/api/v1/orders", json={"product_id": 1, "quantity": 1}),
                   401, "missing_token")
    assert_problem(await order(api, buyer, 2**53 - 1), 404, "not_found")
    limited = await product(api, seller, stock=2, limit_per_user=1)
    assert (await order(api, buyer, limited)).status_code == 201
    # One unpaid order per buyer per product, whatever the limit says.
    assert_problem(await order(api, buyer, limited), 409, "unpaid_order_exists")
    assert_problem(await order(api, stranger, limited, quantity=2), 409,
                   "purchase_limit_exceeded")
    assert (await order(api, stranger, limited)).status_code == 201
    assert_problem(await order(api, seller, limited), 409, "sold_out")
    later = await product(api, seller, stock=5, kind="preorder", sale_opens_at=at(days=1),
                          sale_closes_at=at(days=2))
    assert_problem(await order(api, buyer, later), 409, "sale_not_open")
    brief = await product(api, seller, stock=5, kind="preorder", sale_opens_at=at(seconds=1),
                          sale_closes_at=at(seconds=2))
    await asyncio.sleep(2.5)
    assert_problem(await order(api, buyer, brief), 409, "sale_closed")
    for bad in ({"product_id": limited, "quantity": 0}, {"product_id": limited, "quantity": 101},
                {"product_id": limited}, {"product_id": limited, "quantity": 1, "price": 1}):
        assert_problem(await api.post("/api/v1/orders", json=bad, headers=buyer.headers),
                       422, "validation_error")
    assert await remaining(api, limited) == 0
    assert await remaining(api, later) == 5  # the refusals took nothing


async def test_cancel_gives_stock_back_and_refunds_a_paid_order(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, buyer, _ = people
    product_id = await product(api, seller, stock=4)
    paid = (await order(api, buyer, product_id)).json()["id"]
    assert (await pay(api, buyer, paid)).status_code == 201
    pending = (await order(api, buyer, product_id)).json()["id"]
    assert await remaining(api, product_id) == 2
    cancelled = await api.post(f"/api/v1/orders/{pending}/cancel", headers=buyer.headers)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    refunded = await api.post(f"/api/v1/orders/{paid}/cancel", headers=buyer.headers)
    assert (refunded.status_code, refunded.json()["status"]) == (200, "refunded")
    assert await remaining(api, product_id) == 4  # back when the cancel answered
    assert_problem(await api.post(f"/api/v1/orders/{pending}/cancel", headers=buyer.headers),
                   409, "invalid_state")
    assert_problem(await pay(api, buyer, pending), 409, "invalid_state")


async def test_a_declined_card_fails_the_order_and_returns_its_stock(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, buyer, _ = people
    product_id = await product(api, seller, stock=2)
    order_id = (await order(api, buyer, product_id, quantity=2)).json()["id"]
    assert await remaining(api, product_id) == 0
    declined = await pay(api, buyer, order_id, card=CARD_DECLINED)
    assert declined.status_code == 201, declined.text
    assert (declined.json()["status"], declined.json()["failure_code"]) == ("failed",
                                                                            "card_declined")
    assert await status_of(api, buyer, order_id) == "payment_failed"
    assert await remaining(api, product_id) == 2
    assert_problem(await pay(api, buyer, order_id), 409, "invalid_state")
    assert_problem(await pay(api, buyer, order_id, card="4242"), 422, "validation_error")


async def test_the_list_is_the_callers_own_newest_first_filtered_and_paged(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, _, buyer = people
    # One product each: a buyer holds one unpaid order per product.
    ids = [(await order(api, buyer, await product(api, seller, stock=10))).json()["id"]
           for _ in range(4)]
    await api.post(f"/api/v1/orders/{ids[1]}/cancel", headers=buyer.headers)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = await api.get("/api/v1/orders", params=params, headers=buyer.headers)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        assert all(item["user_id"] == buyer.id for item in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen[:4] == ids[::-1]
    cancelled = await api.get("/api/v1/orders", params={"status": "cancelled"},
                              headers=buyer.headers)
    assert ids[1] in [item["id"] for item in cancelled.json()["items"]]
    assert {item["status"] for item in cancelled.json()["items"]} == {"cancelled"}
    assert_problem(await api.get("/api/v1/orders", params={"status": "lost"},
                                 headers=buyer.headers), 422, "validation_error")
    assert_problem(await api.get("/api/v1/orders"), 401, "missing_token")


async def test_idempotency_key_replays_refuses_reuse_and_runs_once(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    seller, buyer, stranger = people
    product_id = await product(api, seller, stock=10)
    first = await order(api, buyer, product_id, quantity=2, key="e2e-k1")
    assert first.status_code == 201, first.text
    again = await order(api, buyer, product_id, quantity=2, key="e2e-k1")
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert_problem(await order(api, buyer, product_id, quantity=3, key="e2e-k1"), 422,
                   "idempotency_key_reused")
    assert (await order(api, stranger, product_id, key="e2e-k1")).status_code == 201
    other = await product(api, seller, stock=10)  # the buyer's unpaid order holds product_id
    burst = await asyncio.gather(*(order(api, buyer, other, key="e2e-k2")
                                   for _ in range(10)))
    assert len({r.json()["id"] for r in burst if r.status_code == 201}) == 1
    assert all(r.status_code == 201 or r.json()["code"] == "idempotency_key_in_use"
               for r in burst), [r.text for r in burst]
    # Each key's work done once.
    assert (await remaining(api, product_id), await remaining(api, other)) == (10 - 2 - 1, 9)

    payment = await pay(api, buyer, first.json()["id"], key="e2e-p1")
    assert payment.status_code == 201, payment.text
    replayed = await pay(api, buyer, first.json()["id"], key="e2e-p1")
    assert (replayed.status_code, replayed.json()) == (201, payment.json())
    assert_problem(await pay(api, buyer, first.json()["id"], card=CARD_DECLINED, key="e2e-p1"),
                   422, "idempotency_key_reused")


async def test_300_orders_at_once_from_one_buyer_make_one_order_and_keep_nothing_more(
    api: httpx.AsyncClient, people: list[User]
) -> None:
    """One unpaid order per buyer per product: of a burst of one buyer's orders one is made;
    the others are refused (the buyer's own orders in flight may hold the stock for a moment:
    sold_out), and none keeps a unit. More than the product's reserve slots at once: the rest
    take the buyer's one place in the line (202, the same ticket while it waits), followed here
    through the gateway to its answer. (Exactly N units for N of many buyers: order_service's
    and the load test's own tests.)"""
    seller, buyer, _ = people
    product_id = await product(api, seller, stock=30)
    answers = await asyncio.gather(*(order(api, buyer, product_id) for _ in range(300)))
    assert {r.status_code for r in answers} <= {201, 202, 409}
    tickets = {r.json()["ticket"] for r in answers if r.status_code == 202}
    finals = [r.json() for r in answers if r.status_code != 202]
    for ticket in tickets:
        finals.append(await ticket_answer(api, buyer, ticket))
    outcomes = Counter(body.get("code", body.get("status")) for body in finals)
    assert set(outcomes) <= {"pending_payment", "unpaid_order_exists", "sold_out"}, outcomes
    # One order, though it may be answered twice: a request asked while the order's own place
    # was still being decided gets that place's ticket (API.md: asking again returns the same
    # ticket), whose answer is the order the first request got with its 201.
    assert len({body["id"] for body in finals if body.get("status") == "pending_payment"}) == 1, \
        finals
    assert await remaining(api, product_id) == 29


async def ticket_answer(api: httpx.AsyncClient, buyer: User, ticket: str) -> dict[str, Any]:
    """A ticket's answer through the gateway: its event stream until it ends, checked against
    GET; the order (as a 201 carries it) or the problem."""
    events = []
    async with asyncio.timeout(60), api.stream(
            "GET", f"/api/v1/orders/tickets/{ticket}/events", headers=buyer.headers,
            timeout=60) as stream:
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    final = events[-1]
    assert final["state"] in ("ordered", "refused"), events
    read = await api.get(f"/api/v1/orders/tickets/{ticket}", params={"wait": "1"},
                         headers=buyer.headers)
    assert read.status_code == 200, read.text
    assert read.json() == final
    answer: dict[str, Any] = final["order"] if final["state"] == "ordered" else final["problem"]
    return answer


async def test_a_limit_of_one_holds_when_each_buyer_sends_three_at_once(
    system: System, people: list[User]
) -> None:
    buyers = []
    for _ in range(8):
        async with client_at(system, new_client_address()) as api:
            buyers.append(await new_user(api, system))
    async with httpx.AsyncClient(base_url=system.gateway.url, timeout=30) as api:
        product_id = await product(api, people[0], stock=5, limit_per_user=1)
        answers = await asyncio.gather(*(order(api, buyer, product_id)
                                         for buyer in buyers for _ in range(3)))
        won = Counter(r.json()["user_id"] for r in answers if r.status_code == 201)
        assert sum(won.values()) == 5
        assert max(won.values()) == 1
        assert {r.json()["code"] for r in answers if r.status_code != 201} <= {
            "sold_out", "purchase_limit_exceeded", "unpaid_order_exists"}
        assert await remaining(api, product_id) == 0


async def test_a_retry_after_the_gateway_gave_up_returns_the_order_that_exists(
    api: httpx.AsyncClient, people: list[User], system: System
) -> None:
    """order_service stalls (SIGSTOP, a process this suite started) with the request in hand:
    the gateway answers 504 in time, the order is made once the service runs again, and the
    client's retry with the same key gets that order, not a refusal it caused."""
    seller, buyer, _ = people
    product_id = await product(api, seller, stock=3, limit_per_user=1)
    orders = system.services["order"].process
    assert orders is not None
    orders.send_signal(signal.SIGSTOP)
    try:
        first = await order(api, buyer, product_id, key="after-504")
    finally:
        orders.send_signal(signal.SIGCONT)
    assert_problem(first, 504, "upstream_timeout")
    for _ in range(100):
        again = await order(api, buyer, product_id, key="after-504")
        if again.status_code != 409 or again.json()["code"] != "idempotency_key_in_use":
            break
        await asyncio.sleep(0.2)
    assert again.status_code == 201, again.text
    mine = await api.get("/api/v1/orders", headers=buyer.headers)
    made = [o for o in mine.json()["items"] if o["product_id"] == product_id]
    assert [o["id"] for o in made] == [again.json()["id"]]
    assert await remaining(api, product_id) == 2
