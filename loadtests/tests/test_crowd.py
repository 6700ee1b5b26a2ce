"""The crowd's buyers against recorded answers of the contract's line (API.md, "The line at the
opening"), served over real HTTP on loopback: a 202 with a ticket followed through the ticket's
event stream to its final answer, through `?wait=` when the stream ends without one, and a
ticket whose answer changes on the read afterwards, which the checker must name."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from loadtests.checker import Ledger, SaleState, check
from loadtests.crowd import Crowd, CrowdOptions, EventParser
from loadtests.seed_file import SaleSeed
from shared.testing.net import ThreadedServer

PRODUCT = 9
UNITS = 2


# How long after `opens_at` the test server's stream says "open" (see its stream).
OPEN_MARGIN = 0.005


@dataclass
class RecordedLine:
    """The line as the contract describes it: a 202 and a ticket for every order, the first
    UNITS places `ordered`, the others `refused` sold_out. `stream_final`: whether the events
    stream sends the final state (else it ends after `waiting`, and ?wait= gives it);
    `flip`: the read afterwards answers the opposite (a broken line)."""

    stream_final: bool = True
    flip: bool = False
    moves: bool = False  # the stream sends the position one nearer the front before the answer
    tickets: dict[str, int] = field(default_factory=dict)  # ticket -> position
    waited: int = 0
    live_lag: float = 0.0
    opens_at: float = 0.0  # when set, the live stream says "open" then

    def body(self, ticket: str, *, final: bool = True, flipped: bool = False) -> dict[str, Any]:
        position = self.tickets[ticket]
        won = (position <= UNITS) != flipped
        base = {"ticket": ticket, "product_id": PRODUCT, "position": position}
        if not final:
            return base | {"state": "waiting"}
        if won:
            return base | {"state": "ordered", "order": {"id": 100 + position, "status":
                                                         "pending_payment"}}
        return base | {"state": "refused", "problem": {"status": 409, "code": "sold_out"}}

    def app(self) -> Starlette:
        async def live(request: Request) -> Response:
            # A first event replayed from a cache: its server_time `live_lag` seconds old.
            then = datetime.now(UTC) - timedelta(seconds=self.live_lag)
            event = {"product_id": PRODUCT, "remaining": UNITS, "sale_state": "scheduled",
                     "server_time": then.isoformat(timespec="milliseconds")[:-6] + "Z"}

            async def stream() -> AsyncIterator[bytes]:
                yield f"id: 1\ndata: {json.dumps(event)}\n\n".encode()
                if self.opens_at:
                    # An event loop's timer may fire up to its granularity early (libuv's is
                    # a millisecond): "open" is said once the wall clock has surely reached it.
                    await asyncio.sleep(max(0.0, self.opens_at - time.time()) + OPEN_MARGIN)
                    opened = event | {"sale_state": "open", "server_time": datetime.now(
                        UTC).isoformat(timespec="milliseconds")[:-6] + "Z"}
                    yield f"id: 2\ndata: {json.dumps(opened)}\n\n".encode()
                await asyncio.sleep(30)

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def orders(request: Request) -> Response:
            user = request.headers["authorization"].rsplit("-", 1)[1]
            ticket = f"tk-{user}"
            self.tickets.setdefault(ticket, len(self.tickets) + 1)
            return JSONResponse({"ticket": ticket, "product_id": PRODUCT,
                                 "position": self.tickets[ticket], "state": "waiting",
                                 "status_url": f"/api/v1/orders/tickets/{ticket}"},
                                status_code=202, headers={"Retry-After": "1"})

        async def events(request: Request) -> Response:
            ticket = request.path_params["ticket"]

            async def stream() -> AsyncIterator[bytes]:
                yield f"data: {json.dumps(self.body(ticket, final=False))}\n\n".encode()
                if self.moves:
                    await asyncio.sleep(0.1)
                    nearer = self.body(ticket, final=False)
                    nearer["position"] = max(1, nearer["position"] - 1)
                    yield f"data: {json.dumps(nearer)}\n\n".encode()
                await asyncio.sleep(0.2)
                if self.stream_final:
                    yield f"data: {json.dumps(self.body(ticket))}\n\n".encode()

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def read(request: Request) -> Response:
            ticket = request.path_params["ticket"]
            if "wait" in request.query_params:
                self.waited += 1
                return JSONResponse(self.body(ticket))
            return JSONResponse(self.body(ticket, flipped=self.flip))

        async def my_orders(request: Request) -> Response:
            return JSONResponse({"items": [], "next_cursor": None})

        async def pay(request: Request) -> Response:
            body = await request.json()
            return JSONResponse({"id": 1, "order_id": body["order_id"], "amount": 1000,
                                 "status": "succeeded", "failure_code": None}, status_code=201)

        return Starlette(routes=[
            Route(f"/api/v1/products/{PRODUCT}/live", live),
            Route("/api/v1/orders", orders, methods=["POST"]),
            Route("/api/v1/orders", my_orders, methods=["GET"]),
            Route("/api/v1/orders/tickets/{ticket}/events", events),
            Route("/api/v1/orders/tickets/{ticket}", read),
            Route("/api/v1/payments", pay, methods=["POST"]),
        ])


@pytest.fixture
def line() -> RecordedLine:
    return RecordedLine()


@pytest.fixture
def server(line: RecordedLine) -> Iterator[str]:
    running = ThreadedServer(line.app()).start()
    try:
        yield running.url
    finally:
        running.stop()


async def crowd_of(url: str, buyers: int, opens_at: float | None = None,
                   **options: Any) -> Crowd:
    opens_at = opens_at or time.time() + 1.0
    accounts = [{"user_id": 1000 + n, "access_token": f"token-{n}"} for n in range(buyers)]
    seed = SaleSeed(host=url, product_id=PRODUCT, sale_opens_at="", opens_at=opens_at,
                    stock=UNITS, limit_per_user=1, price=1000, seller={}, accounts=accounts)
    crowd = Crowd(seed, list(enumerate(accounts)),
                  CrowdOptions(hosts=[url], ramp=0.3, deadline=15.0, double_tap=0.0, **options))
    await asyncio.wait_for(crowd.run(), 30)
    return crowd


def verdict_of(crowd: Crowd) -> list[str]:
    state = SaleState(PRODUCT, Ledger(total=UNITS, held=0, sold=0, limit_per_user=1), [], [],
                      [], {}, UNITS)
    buyers = crowd.as_dict()["buyers"]
    return sorted(check(state, buyers=buyers).breaches)


async def test_a_ticket_is_followed_through_its_stream_to_its_final_answer(
        server: str, line: RecordedLine) -> None:
    crowd = await crowd_of(server, 4, walk_away=0.0, declined=0.0)
    taps = [b.taps[0] for b in crowd.buyers]
    assert all(b.live_status == 200 and not b.error for b in crowd.buyers)
    assert [t.status for t in taps] == [202] * 4
    assert sorted(t.state or "" for t in taps) == ["ordered", "ordered", "refused", "refused"]
    for t in taps:
        assert t.ticket is not None
        assert t.answered is not None
        assert t.final_at is not None
        assert t.final_at >= t.answered + 0.1  # the final event came after the waiting one
        assert len(t.finals) == 1
    assert {t.order_id for t in taps if t.state == "ordered"} == {101, 102}
    assert {t.final_code for t in taps if t.state == "refused"} == {"sold_out"}
    assert line.waited == 0  # the stream gave every answer
    records = crowd.as_dict()["records"]
    assert sorted(r[1] for r in records if r[0] == "POST /payments") == [201, 201]
    counts = {(route, status): n for (route, status, _), n in crowd.counts.items()}
    assert counts[("GET /orders/tickets/{ticket}/events", 200)] == 4
    assert counts[("GET /products/{id}/live", 200)] == 4
    assert verdict_of(crowd) == []


async def test_a_waiting_buyer_counts_the_moves_of_its_position_towards_the_front(
        server: str, line: RecordedLine) -> None:
    """The report's `waiting` figures: each position nearer the front is a move, and the
    longest a buyer went without one runs from its ticket to its final answer."""
    line.moves = True
    crowd = await crowd_of(server, 3, walk_away=1.0)
    taps = sorted((b.taps[0] for b in crowd.buyers), key=lambda t: t.ticket or "")
    for tap in taps:
        assert tap.answered is not None
        assert tap.final_at is not None
        assert tap.moved_at == tap.final_at
        assert 0.1 <= tap.longest_unmoved <= tap.final_at - tap.answered
    assert sorted(t.moves for t in taps) == [0, 1, 1]  # the first place cannot move up
    assert verdict_of(crowd) == []


async def test_a_stream_that_ends_without_a_final_state_is_followed_with_wait(
        server: str, line: RecordedLine) -> None:
    line.stream_final = False
    crowd = await crowd_of(server, 3, walk_away=1.0)
    taps = [b.taps[0] for b in crowd.buyers]
    assert line.waited == 3
    assert sorted(t.state or "" for t in taps) == ["ordered", "ordered", "refused"]
    assert verdict_of(crowd) == []


async def test_a_ticket_whose_answer_changes_afterwards_is_answered_twice(
        server: str, line: RecordedLine) -> None:
    line.flip = True
    crowd = await crowd_of(server, 3, walk_away=1.0)
    assert all(len(b.taps[0].finals) == 2 for b in crowd.buyers)
    assert verdict_of(crowd) == ["ticket_answered_once"]


async def test_a_stale_clock_on_the_first_event_does_not_delay_the_press_past_the_opening(
        server: str, line: RecordedLine) -> None:
    line.live_lag = 5.0
    # Time enough for the buyers to open their streams first on a busy machine.
    line.opens_at = time.time() + 3.0
    crowd = await crowd_of(server, 3, opens_at=line.opens_at, walk_away=1.0)
    assert all(b.clock_offset < -4.0 for b in crowd.buyers)  # the countdown would run 5 s late
    sent = [b.taps[0].sent - line.opens_at for b in crowd.buyers]
    assert all(0.0 <= s < 2.0 for s in sent), sent  # pressed on the stream's "open", not 5 s on


async def test_nothing_listening_leaves_every_buyer_without_an_answer() -> None:
    crowd = await crowd_of("http://127.0.0.1:9", 2)  # the discard port: nothing answers
    assert all(b.error for b in crowd.buyers)
    assert verdict_of(crowd) == ["every_buyer_answered"]


def test_events_are_read_across_chunks_and_comments_skipped() -> None:
    events = EventParser()
    assert events.feed(b": keep-alive\n\nid: 3\ndata: {\"a\"") == []
    assert events.feed(b":1}\r\n\r\ndata: 2\n\n") == ['{"a":1}', "2"]
