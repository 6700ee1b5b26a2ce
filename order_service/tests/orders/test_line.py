"""The line of an opening, end to end: order_service as a real process (one reserve slot per
product, so a small crowd is already more than it decides at once) over real Redis, MariaDB
and stock_service, asked over loopback HTTP as the gateway would ask it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from order_service.orders.scripts import Record
from shared.testing.identity import identity_headers
from shared.testing.metrics import scrape
from shared.testing.sale import Sale, register_product
from shared.testing.sale_flow import settled

MAX_WAITING = 30
ORDERS = "/api/v1/orders"


@pytest.fixture(scope="module")
def line_sale(sale: Sale) -> Iterator[Sale]:
    """The sale's order_service with one reserve slot per product, a short line, and a sweep
    every 10 ms: it meets most orders' decisions."""
    sale.restart("order", ORDER_RESERVES_IN_FLIGHT_PER_PRODUCT="1",
                 ORDER_LINE_MAX_WAITING=str(MAX_WAITING), ORDER_LINE_SWEEP_INTERVAL_SECONDS="0.01")
    try:
        yield sale
    finally:
        sale.restart("order")


def buyer() -> int:
    return int.from_bytes(os.urandom(4), "big") + 1


def now_us() -> int:
    return time.time_ns() // 1000


def request_id_of(user: int) -> str:
    """The X-Request-Id a crowd's buyer sends its order with."""
    return f"test-order-{user:012}"


async def post_order(http: httpx.AsyncClient, sale: Sale, *, user: int, product: int,
                     quantity: int = 1, key: str | None = None,
                     arrived_us: int | None = None) -> httpx.Response:
    headers = identity_headers(user, arrived_at_us=arrived_us)
    headers["X-Request-Id"] = request_id_of(user)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post(sale.url("order") + ORDERS, headers=headers,
                           json={"product_id": product, "quantity": quantity})


async def get_ticket(http: httpx.AsyncClient, sale: Sale, *, user: int, ticket: str,
                     wait: int | None = None) -> httpx.Response:
    params = {"wait": str(wait)} if wait is not None else {}
    return await http.get(sale.url("order") + f"{ORDERS}/tickets/{ticket}", params=params,
                          headers=identity_headers(user), timeout=40)


async def final_answer(http: httpx.AsyncClient, sale: Sale, *, user: int,
                       ticket: str) -> dict[str, Any]:
    """Follows the ticket with ?wait= until its answer (within a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = await get_ticket(http, sale, user=user, ticket=ticket, wait=25)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["state"] != "waiting":
            return body
    raise AssertionError(f"ticket {ticket} had no answer within a minute")


async def crowd(http: httpx.AsyncClient, sale: Sale, product: int,
                buyers: list[int]) -> list[httpx.Response]:
    """Every buyer orders one unit at once, each stamped as arriving in the list's order."""
    start = now_us()
    return list(await asyncio.gather(*(
        post_order(http, sale, user=user, product=product, arrived_us=start + index)
        for index, user in enumerate(buyers))))


async def outcomes(http: httpx.AsyncClient, sale: Sale, buyers: list[int],
                   answers: list[httpx.Response]) -> dict[int, dict[str, Any]]:
    """Each buyer's final answer: the order or problem of a direct answer, or its ticket's."""
    finals: dict[int, dict[str, Any]] = {}
    # A few long polls at a time (see shared/testing/sale_flow.py decided).
    turns = asyncio.Semaphore(32)

    async def follow(user: int, answer: httpx.Response) -> None:
        if answer.status_code == 202:
            body = answer.json()
            assert answer.headers["retry-after"] == "1"
            assert body["state"] == "waiting"
            assert body["position"] >= 1
            assert body["status_url"] == f"{ORDERS}/tickets/{body['ticket']}"
            async with turns:
                finals[user] = await final_answer(http, sale, user=user, ticket=body["ticket"])
        elif answer.status_code == 201:
            finals[user] = {"state": "ordered", "order": answer.json()}
        else:
            finals[user] = {"state": "refused", "problem": answer.json()}

    await asyncio.gather(*(follow(user, answer) for user, answer in zip(buyers, answers,
                                                                        strict=True)))
    return finals


async def test_a_crowd_larger_than_the_slots_gets_tickets_and_each_ends_ordered_or_refused(
    http: httpx.AsyncClient, line_sale: Sale, engines: dict[str, AsyncEngine], redis: Redis
) -> None:
    product = await register_product(http, line_sale, total=8)
    buyers = [buyer() for _ in range(25)]
    answers = await crowd(http, line_sale, product, buyers)
    assert Counter(a.status_code for a in answers)[202] > 0, [a.text for a in answers]
    assert {a.status_code for a in answers} <= {201, 202, 409}
    finals = await outcomes(http, line_sale, buyers, answers)
    states = Counter(final["state"] for final in finals.values())
    assert states == {"ordered": 8, "refused": 17}
    refusals = Counter(final["problem"]["code"] for final in finals.values()
                       if final["state"] == "refused")
    assert refusals == {"sold_out": 17}
    for user, final in finals.items():
        if final["state"] == "ordered":
            assert final["order"]["user_id"] == user
            assert final["order"]["status"] == "pending_payment"
    # Exactly the stock was sold, and units, holds and orders agree.
    counts = await settled(engines, redis, product)
    assert counts["remaining"] + counts["held"] + counts["sold"] == 8
    assert counts["remaining"] in range(0, 9)


async def test_places_are_taken_in_arrival_order(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    """The winners among the ticketed buyers are the earliest to arrive: whatever order the
    requests were read in, places follow the gateway's stamp."""
    product = await register_product(http, line_sale, total=6)
    buyers = [buyer() for _ in range(25)]
    answers = await crowd(http, line_sale, product, buyers)
    finals = await outcomes(http, line_sale, buyers, answers)
    direct_orders = sum(1 for a in answers if a.status_code == 201)
    ticketed = [user for user, answer in zip(buyers, answers, strict=True)
                if answer.status_code == 202]
    won = [finals[user]["state"] == "ordered" for user in ticketed]
    # Stamped in the list's order: every ticketed winner came before every ticketed loser.
    assert won == sorted(won, reverse=True), won
    assert sum(won) + direct_orders == 6


async def test_the_same_buyer_asking_again_gets_the_same_ticket(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    product = await register_product(http, line_sale, total=100)
    buyers = [buyer() for _ in range(25)]
    answers = await crowd(http, line_sale, product, buyers)
    ticketed = [(user, answer.json()) for user, answer in zip(buyers, answers, strict=True)
                if answer.status_code == 202]
    assert ticketed
    last_user, last = max(ticketed, key=lambda pair: pair[1]["position"])
    again = await post_order(http, line_sale, user=last_user, product=product, quantity=2)
    if again.status_code == 202:  # still waiting: the same place, not a second one
        assert again.json()["ticket"] == last["ticket"]
    else:  # answered meanwhile: the one unpaid order per product refuses a second
        assert (await final_answer(http, line_sale, user=last_user, ticket=last["ticket"]))[
            "state"] == "ordered"
        assert again.json()["code"] == "unpaid_order_exists", again.text
    await outcomes(http, line_sale, buyers, answers)


async def test_an_idempotent_retry_gets_the_ticket_then_its_answer(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    product = await register_product(http, line_sale, total=100)
    crowd_buyers = [buyer() for _ in range(20)]
    keyed, key = buyer(), f"key-{os.urandom(6).hex()}"
    start = now_us()
    answers = await asyncio.gather(
        *(post_order(http, line_sale, user=user, product=product, arrived_us=start)
          for user in crowd_buyers),
        post_order(http, line_sale, user=keyed, product=product, key=key,
                   arrived_us=start + 1))
    first = answers[-1]
    assert first.status_code in (201, 202), first.text
    retried = await post_order(http, line_sale, user=keyed, product=product, key=key)
    if first.status_code == 202 and retried.status_code == 202:
        assert retried.json()["ticket"] == first.json()["ticket"]
    # Another body with the key: refused, whatever became of the first.
    other = await post_order(http, line_sale, user=keyed, product=product, quantity=3, key=key)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    if first.status_code == 202:
        final = await final_answer(http, line_sale, user=keyed, ticket=first.json()["ticket"])
        assert final["state"] == "ordered", final
        order = final["order"]
    else:
        order = first.json()
    # Once answered, the retry is that answer: the same order, never a second one.
    replay = await post_order(http, line_sale, user=keyed, product=product, key=key)
    assert replay.status_code == 201, replay.text
    assert replay.json() == order
    await outcomes(http, line_sale, crowd_buyers, list(answers[:-1]))


async def test_a_ticket_is_its_owners_only_and_a_malformed_one_is_unknown(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    product = await register_product(http, line_sale, total=100)
    buyers = [buyer() for _ in range(20)]
    answers = await crowd(http, line_sale, product, buyers)
    user, answer = next((u, a) for u, a in zip(buyers, answers, strict=True)
                        if a.status_code == 202)
    ticket = answer.json()["ticket"]
    stranger = await get_ticket(http, line_sale, user=buyer(), ticket=ticket)
    assert stranger.status_code == 404
    assert stranger.json()["code"] == "not_found"
    for bad in (f"{product}-AAAAAAAAAAAAAAAA", "nonsense", "0-AAAAAAAAAAAAAAAA", "x" * 64):
        unknown = await get_ticket(http, line_sale, user=user, ticket=bad)
        assert unknown.status_code == 404, (bad, unknown.text)
    for wait in ("0", "26", "-1", "soon"):
        refused = await http.get(line_sale.url("order") + f"{ORDERS}/tickets/{ticket}",
                                 params={"wait": wait}, headers=identity_headers(user))
        assert refused.status_code == 422, (wait, refused.text)
    anonymous = await http.get(line_sale.url("order") + f"{ORDERS}/tickets/{ticket}")
    assert anonymous.status_code == 401
    mine = await get_ticket(http, line_sale, user=user, ticket=ticket)
    assert mine.status_code == 200
    assert mine.json()["ticket"] == ticket
    await outcomes(http, line_sale, buyers, answers)


async def crowd_and_its_last_ticket(
    http: httpx.AsyncClient, sale: Sale
) -> tuple[list[int], list[httpx.Response], int, dict[str, Any]]:
    """25 buyers of a product with units for all: their answers, and the buyer and body of
    the ticket furthest back in the line."""
    product = await register_product(http, sale, total=100)
    buyers = [buyer() for _ in range(25)]
    answers = await crowd(http, sale, product, buyers)
    ticketed = [(u, a.json()) for u, a in zip(buyers, answers, strict=True)
                if a.status_code == 202]
    user, body = max(ticketed, key=lambda pair: pair[1]["position"])
    return buyers, answers, user, body


async def test_wait_returns_when_the_ticket_is_answered(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    buyers, answers, user, body = await crowd_and_its_last_ticket(http, line_sale)
    started = time.monotonic()
    waited = await get_ticket(http, line_sale, user=user, ticket=body["ticket"], wait=25)
    assert waited.status_code == 200
    assert waited.json()["state"] == "ordered", waited.text
    assert time.monotonic() - started < 20  # answered on the change, not at the end of the wait
    await outcomes(http, line_sale, buyers, answers)


async def test_a_tickets_read_tells_the_gateway_whether_its_answer_is_given_or_to_come(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    """X-Edge-Final (shared/edge_finals.py): `pending` while the ticket waits (its answer will
    be published for the edge), `final` once answered; the gateway then holds the ticket's
    stream itself."""
    buyers, answers, user, body = await crowd_and_its_last_ticket(http, line_sale)
    read = await get_ticket(http, line_sale, user=user, ticket=body["ticket"])
    waiting = read.json()["state"] == "waiting"
    assert read.headers["x-edge-final"] == ("pending" if waiting else "final"), read.text
    await final_answer(http, line_sale, user=user, ticket=body["ticket"])
    read = await get_ticket(http, line_sale, user=user, ticket=body["ticket"])
    assert read.json()["state"] in ("ordered", "refused")
    assert read.headers["x-edge-final"] == "final"
    await outcomes(http, line_sale, buyers, answers)


async def test_the_events_stream_ends_with_the_answer(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    buyers, answers, user, body = await crowd_and_its_last_ticket(http, line_sale)
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(40), http.stream(
            "GET", line_sale.url("order") + f"{ORDERS}/tickets/{body['ticket']}/events",
            headers=identity_headers(user), timeout=40) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    # The stream ended by itself, after the answer; meanwhile it told the place moving up.
    assert events[-1]["state"] == "ordered", events
    assert all(event["state"] == "waiting" for event in events[:-1])
    positions = [event["position"] for event in events[:-1]]
    assert positions == sorted(set(positions), reverse=True), events
    assert events[-1]["ticket"] == body["ticket"]
    # An answered ticket's stream is its answer, and ends at once.
    async with asyncio.timeout(10), http.stream(
            "GET", line_sale.url("order") + f"{ORDERS}/tickets/{body['ticket']}/events",
            headers=identity_headers(user)) as again:
        lines = [line async for line in again.aiter_lines() if line.startswith("data: ")]
    assert [json.loads(line[len("data: "):])["state"] for line in lines] == ["ordered"]
    await outcomes(http, line_sale, buyers, answers)


async def test_a_sell_out_refuses_every_waiting_ticket(
    http: httpx.AsyncClient, line_sale: Sale, engines: dict[str, AsyncEngine], redis: Redis
) -> None:
    product = await register_product(http, line_sale, total=2)
    buyers = [buyer() for _ in range(25)]
    answers = await crowd(http, line_sale, product, buyers)
    finals = await outcomes(http, line_sale, buyers, answers)
    states = Counter(final["state"] for final in finals.values())
    assert states == {"ordered": 2, "refused": 23}
    ticketed = {user for user, answer in zip(buyers, answers, strict=True)
                if answer.status_code == 202}
    assert ticketed
    for user, final in finals.items():
        if final["state"] == "refused":
            assert final["problem"]["code"] == "sold_out"
            assert final["problem"]["status"] == 409
            # A refusal in a ticket names the request that took the place, as its 409 would.
            assert final["problem"]["request_id"] == request_id_of(user), (user in ticketed,
                                                                            final)
    counts = await settled(engines, redis, product)
    assert counts["remaining"] + counts["held"] + counts["sold"] == 2


async def test_a_line_longer_than_its_longest_is_429(
    http: httpx.AsyncClient, line_sale: Sale
) -> None:
    product = await register_product(http, line_sale, total=1000)
    buyers = [buyer() for _ in range(MAX_WAITING * 3)]
    answers = await crowd(http, line_sale, product, buyers)
    full = [a for a in answers if a.status_code == 429]
    assert full, Counter(a.status_code for a in answers)
    for answer in full:
        assert answer.json()["code"] == "rate_limited"
        assert int(answer.headers["retry-after"]) >= 1
    assert max(a.json()["position"] for a in answers if a.status_code == 202) <= MAX_WAITING
    await outcomes(http, line_sale, buyers, answers)


async def test_the_lines_metrics_count_each_ticket_once(
        http: httpx.AsyncClient, line_sale: Sale) -> None:
    """Scraped from order_service's /metrics: every 202 is a ticket joined, every ticket ends
    ordered or refused once, and the time in line is observed for those the drain decided."""
    metrics_url = line_sale.url("order") + "/metrics"
    before = await scrape(http, metrics_url)
    product = await register_product(http, line_sale, total=4)
    buyers = [buyer() for _ in range(12)]
    answers = await crowd(http, line_sale, product, buyers)
    tickets = sum(a.status_code == 202 for a in answers)
    assert tickets > 0
    await outcomes(http, line_sale, buyers, answers)
    after = await scrape(http, metrics_url)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    name = "preorder_line_tickets_total"
    assert moved(name, outcome="joined") == tickets
    assert moved(name, outcome="ordered") + moved(name, outcome="refused") == tickets
    assert 1 <= moved("preorder_line_wait_seconds_count") <= tickets
    # Every place is decided: nobody is shown waiting in the product's line any more.
    assert after.value("preorder_line_length", product=str(product)) == 0



async def test_a_replay_of_an_answered_place_leaves_the_next_buyer_straight_on(
    sale: Sale, http: httpx.AsyncClient
) -> None:
    """A buyer's retry with its key finds its place answered: nothing is left to drain, and
    the next buyer, nobody waiting, gets its order (201), not a ticket to follow."""
    product = await register_product(http, sale, total=40)
    for n in range(8):
        first = await post_order(http, sale, user=buyer(), product=product, key=f"k-{n}")
        assert first.status_code == 201, first.text
        replay = await post_order(http, sale, user=first.json()["user_id"], product=product,
                                  key=f"k-{n}")
        assert (replay.status_code, replay.json()) == (201, first.json())
        nxt = await post_order(http, sale, user=buyer(), product=product)
        assert nxt.status_code == 201, nxt.text


async def test_the_sweep_never_sends_a_buyer_into_a_line_nobody_waits_in(
    line_sale: Sale, http: httpx.AsyncClient
) -> None:
    """The sweep drains every product that has a line record, a straight-on order's included.
    Seen in a fresh-clone run: a drain it started while the one slot was deciding an order sat
    out its idle wait, and the next buyer, with nobody waiting, was sent into the line (202)
    instead of getting its order."""
    product = await register_product(http, line_sale, total=60)
    answers = [await post_order(http, line_sale, user=buyer(), product=product)
               for _ in range(60)]
    assert [a.status_code for a in answers] == [201] * 60, [a.text for a in answers]


async def test_a_place_that_goes_straight_on_notes_the_order_id_it_reserves_under(
    sale: Sale, http: httpx.AsyncClient, redis: Redis
) -> None:
    """A straight-on order's place keeps its order id from before the reserve, as a place the
    drain decides does: if its replica dies after the reserve, the place decided again takes
    that hold over (orders/ids.py NotedId) instead of being refused by it."""
    product = await register_product(http, sale, total=5)
    answer = await post_order(http, sale, user=buyer(), product=product)
    assert answer.status_code == 201, answer.text
    [raw] = (await redis.hgetall(f"line:{{p:{product}}}:tickets")).values()
    record = Record.parse(raw if isinstance(raw, str) else raw.decode())
    assert record.straight
    assert record.order_id == answer.json()["id"]
