"""Final states a service published for the edge (shared/edge_finals.py): an answered ticket's
reads by its owner (the ticket and its stream) are given by the gateway without forwarding;
anyone else's, or with a query, are forwarded."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from gateway import app as gateway_app
from gateway import proxy
from gateway.app import create_app
from gateway.runtime import GatewayRuntime
from gateway.tests.conftest import Rig, gateway_settings
from gateway.tests.test_edge_answers import forwarded, until
from shared.broadcast import Channels
from shared.contracts import EDGE_FINAL_FINAL, EDGE_FINAL_HEADER, EDGE_FINAL_PENDING
from shared.edge_finals import FINALS_TOPIC
from shared.testing.net import ThreadedServer

OWNER = "4242"


def ticket_path() -> str:
    return f"/api/v1/orders/tickets/1-{uuid.uuid4().hex[:16]}"


async def publish(redis: Redis, rig: Rig, path: str, body: dict[str, object], *,
                  ttl_ms: int = 5000) -> None:
    message = json.dumps({"ttl_ms": ttl_ms, "finals": [[path, OWNER, body]]})
    await redis.publish(Channels(rig.settings.pubsub_prefix).name(FINALS_TOPIC), message)


def as_user(rig: Rig, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {rig.token(sub=sub)}"}


async def pending_heard(redis: Redis, rig: Rig, client: httpx.AsyncClient,
                        entry: list[object]) -> None:
    """`entry` published pending, and heard by the gateway behind `client`: it comes with a
    final of another path in the same message, read until the gateway answers it."""
    heard_path = ticket_path()
    await redis.publish(Channels(rig.settings.pubsub_prefix).name(FINALS_TOPIC), json.dumps({
        "ttl_ms": 5000, "finals": [[heard_path, OWNER, {"state": "ordered"}]],
        "pending": [entry]}))

    async def heard() -> bool:
        read = await client.get(heard_path, headers=as_user(rig, OWNER))
        return bool(read.json() == {"state": "ordered"})

    await until(heard)


async def test_an_answered_tickets_reads_by_its_owner_are_given_at_the_edge(
        client: httpx.AsyncClient, rig: Rig, redis: Redis) -> None:
    path = ticket_path()
    body = {"ticket": path.rsplit("/", 1)[1], "product_id": 1, "position": 3,
            "state": "refused", "problem": {"code": "sold_out", "status": 409}}
    assert forwarded(await client.get(path, headers=as_user(rig, OWNER)))
    await publish(redis, rig, path, body)

    async def answered() -> bool:
        return not forwarded(await client.get(path, headers=as_user(rig, OWNER)))

    await until(answered)
    read = await client.get(path, headers=as_user(rig, OWNER))
    assert (read.status_code, read.json()) == (200, body)
    assert read.headers["content-type"] == "application/json"
    stream = await client.get(path + "/events", headers=as_user(rig, OWNER))
    assert stream.status_code == 200
    assert not forwarded(stream)
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.content == b"data: " + json.dumps(body, separators=(",", ":")).encode() + \
        b"\n\n"
    # Someone else's read, a read with a query (?wait=), no token: not the edge's to give.
    assert forwarded(await client.get(path, headers=as_user(rig, "77")))
    assert forwarded(await client.get(path + "/events", headers=as_user(rig, "77")))
    assert forwarded(await client.get(path + "?wait=5", headers=as_user(rig, OWNER)))
    assert (await client.get(path)).status_code == 401


async def test_a_final_state_is_forgotten_when_its_time_is_up(
        client: httpx.AsyncClient, rig: Rig, redis: Redis) -> None:
    path = ticket_path()
    await publish(redis, rig, path, {"state": "ordered"}, ttl_ms=300)

    async def answered() -> bool:
        return not forwarded(await client.get(path, headers=as_user(rig, OWNER)))

    await until(answered)

    async def forgotten() -> bool:
        return forwarded(await client.get(path, headers=as_user(rig, OWNER)))

    await until(forgotten)


class PendingTickets:
    """order_service as the held streams see it: a ticket waiting (marked pending, its final
    state to be published) at the positions given, one per read, then answered (no mark)."""

    def __init__(self, positions: list[int], *, final: dict[str, object] | None = None,
                 pending: bool = True, unavailable: frozenset[int] = frozenset()) -> None:
        self.positions = positions
        self.final = final
        self.pending = pending
        self.unavailable = unavailable  # the reads (1, 2, ...) answered 503, overloaded
        self.reads = 0
        self.streams = 0
        self.refused = 0

        async def ticket(request: Request) -> Response:
            if request.url.path.endswith("/events"):
                self.streams += 1
                return Response(b'data: {"relayed":true}\n\n', media_type="text/event-stream")
            if request.headers.get("x-user-id") != OWNER:
                return JSONResponse({"code": "not_found"}, status_code=404,
                                    media_type="application/problem+json")
            if request.url.path.endswith("-slow"):
                await asyncio.sleep(3)
                return JSONResponse({"state": "waiting", "position": 9})
            if self.reads + self.refused + 1 in self.unavailable:
                self.refused += 1
                return JSONResponse({"code": "upstream_unavailable"}, status_code=503,
                                    media_type="application/problem+json")
            self.reads += 1
            if self.reads > len(self.positions) and self.final is not None:
                return JSONResponse(self.final, headers={EDGE_FINAL_HEADER: EDGE_FINAL_FINAL}
                                    if self.pending else None)
            position = self.positions[min(self.reads, len(self.positions)) - 1]
            return JSONResponse({"state": "waiting", "position": position},
                                headers={EDGE_FINAL_HEADER: EDGE_FINAL_PENDING}
                                if self.pending else None)

        self.server = ThreadedServer(Starlette(routes=[StarletteRoute(
            "/api/v1/orders/tickets/{rest:path}", ticket)]))

    def __enter__(self) -> PendingTickets:
        self.server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.stop()


@contextmanager
def gateway_before(rig: Rig, redis_url: str, tickets: PendingTickets, *,
                   held: bool = True, **settings: object) -> Iterator[str]:
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    upstreams["order"] = tickets.server.url
    gateway = ThreadedServer(create_app(gateway_settings(upstreams, redis_url,
                                                         edge_held_streams=held,
                                                         **settings))).start()
    try:
        yield gateway.url
    finally:
        gateway.stop()


async def events_of(stream: httpx.Response) -> AsyncIterator[dict[str, object]]:
    async for line in stream.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line[len("data: "):])


async def held_stream_events(rig: Rig, redis_url: str,
                             tickets: PendingTickets) -> list[dict[str, object]]:
    """Every event of one ticket's stream, through a gateway in front of `tickets`."""
    with gateway_before(rig, redis_url, tickets) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c, \
                c.stream("GET", ticket_path() + "/events", headers=as_user(rig, OWNER)) as stream:
            return [event async for event in events_of(stream)]


async def test_a_pending_tickets_stream_is_held_at_the_edge_until_its_answer(
        rig: Rig, redis: Redis, redis_url: str) -> None:
    """The ticket read once (a short request on a pooled connection), its answer heard on the
    finals channel: no stream is opened at order_service."""
    path = ticket_path()
    answer: dict[str, object] = {"state": "ordered", "order": {"id": 7}}
    with PendingTickets([5]) as tickets, gateway_before(rig, redis_url, tickets) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            async with c.stream("GET", path + "/events", headers=as_user(rig, OWNER)) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                assert "x-edge-final" not in stream.headers
                events = events_of(stream)
                assert await anext(events) == {"state": "waiting", "position": 5}
                await publish(redis, rig, path, answer)
                assert await anext(events) == answer
                assert [event async for event in events] == []  # the stream ended
            # A plain read, forwarded: the mark is between the service and the gateway only.
            read = await c.get(ticket_path(), headers=as_user(rig, OWNER))
            assert read.json() == {"state": "waiting", "position": 5}
            assert "x-edge-final" not in read.headers
    assert (tickets.reads, tickets.streams) == (2, 0)


async def test_a_stream_opened_right_after_its_place_was_taken_is_held_without_a_read(
        rig: Rig, redis: Redis, redis_url: str) -> None:
    """The place's pending state, heard on the finals channel when it was taken, is the
    stream's first event: order_service is not asked at all."""
    path = ticket_path()
    waiting: dict[str, object] = {"ticket": path.rsplit("/", 1)[1], "product_id": 1,
                                  "position": 4, "state": "waiting"}
    answer: dict[str, object] = {"state": "refused", "problem": {"code": "sold_out"}}
    with PendingTickets([5]) as tickets, gateway_before(rig, redis_url, tickets) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            await pending_heard(redis, rig, c, [path, OWNER, waiting])
            reads = tickets.reads
            async with c.stream("GET", path + "/events", headers=as_user(rig, OWNER)) as stream:
                assert stream.status_code == 200
                events = events_of(stream)
                assert await anext(events) == waiting
                await publish(redis, rig, path, answer)
                assert await anext(events) == answer
                assert [event async for event in events] == []
            # Someone else's stream of it is not held on the owner's pending state.
            other = await c.get(path + "/events", headers=as_user(rig, "77"))
            assert other.status_code == 404
    assert (tickets.reads - reads, tickets.streams) == (0, 0)


async def test_a_held_stream_hears_its_position_as_its_line_moves_without_a_read(
        rig: Rig, redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A place published with where it stands in its line (JOIN) is sent its position as the
    line's front moves (CLAIM's counts), from memory: order_service is not asked, and a count
    that does not bring it nearer the front sends nothing."""
    monkeypatch.setattr(proxy, "POSITION_EVERY_SECONDS", 0.05)
    path = ticket_path()
    waiting: dict[str, object] = {"ticket": path.rsplit("/", 1)[1], "product_id": 1,
                                  "position": 40, "state": "waiting"}
    answer: dict[str, object] = {"state": "refused", "problem": {"code": "sold_out"}}
    channel = Channels(rig.settings.pubsub_prefix).name(FINALS_TOPIC)

    async def moved(count: int) -> None:
        await redis.publish(channel, json.dumps({"ttl_ms": 0, "finals": [],
                                                 "moved": [["line:1", count]]}))

    with PendingTickets([5]) as tickets, gateway_before(rig, redis_url, tickets) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            await pending_heard(redis, rig, c, [path, OWNER, waiting, ["line:1", 100]])
            reads = tickets.reads
            async with c.stream("GET", path + "/events", headers=as_user(rig, OWNER)) as stream:
                events = events_of(stream)
                assert await anext(events) == waiting
                await moved(130)
                assert await anext(events) == {**waiting, "position": 10}
                await moved(130)  # the same count again: nothing to send
                await moved(135)
                assert await anext(events) == {**waiting, "position": 5}
                await publish(redis, rig, path, answer)
                assert await anext(events) == answer
                assert [event async for event in events] == []
    assert (tickets.reads - reads, tickets.streams) == (0, 0)


async def test_a_held_streams_reads_do_not_wait_among_the_orders(
        rig: Rig, redis_url: str) -> None:
    """The ordinary pool is the one the crowd's orders wait for (GATEWAY_MAX_CONNECTIONS_PER_
    UPSTREAM, a few dozen): a held stream reads its ticket on the long polls' pool instead."""
    with PendingTickets([5]) as tickets, \
            gateway_before(rig, redis_url, tickets, max_connections_per_upstream=1,
                           upstream_timeout_seconds=5.0) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            slow = asyncio.create_task(c.get("/api/v1/orders/tickets/1-ticket-that-is-slow",
                                             headers=as_user(rig, OWNER)))
            await asyncio.sleep(0.3)  # it holds the one ordinary connection for 3 s

            async def first_event() -> dict[str, object]:
                async with c.stream("GET", ticket_path() + "/events",
                                    headers=as_user(rig, OWNER)) as stream:
                    return await anext(events_of(stream))

            assert await asyncio.wait_for(first_event(), 1.5) == {"state": "waiting",
                                                                  "position": 5}
            assert (await slow).status_code == 200


async def test_a_held_stream_reads_its_ticket_again_and_ends_with_a_missed_answer(
        rig: Rig, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read again now and then: a position that moved is sent; an answer whose message this
    gateway missed (the read is no longer marked pending) is sent, and ends the stream."""
    monkeypatch.setattr(proxy, "HELD_REFRESH_SECONDS", 0.2)
    final: dict[str, object] = {"state": "refused", "problem": {"code": "sold_out"}}
    with PendingTickets([5, 5, 2], final=final) as tickets:
        events = await held_stream_events(rig, redis_url, tickets)
    assert events == [{"state": "waiting", "position": 5}, {"state": "waiting", "position": 2},
                      final]
    assert (tickets.reads, tickets.streams) == (4, 0)


async def test_a_held_stream_outlasts_a_read_its_service_could_not_answer(
        rig: Rig, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read again answered 5xx (order_service overloaded: seen at 20,000 buyers) is no
    answer: the stream goes on held and reads again later, instead of ending without one and
    sending its buyer to a long poll at the same overloaded service."""
    monkeypatch.setattr(proxy, "HELD_REFRESH_SECONDS", 0.2)
    final: dict[str, object] = {"state": "refused", "problem": {"code": "sold_out"}}
    with PendingTickets([5, 2], final=final, unavailable=frozenset({2})) as tickets:
        events = await held_stream_events(rig, redis_url, tickets)
    assert events == [{"state": "waiting", "position": 5}, {"state": "waiting", "position": 2},
                      final]
    assert (tickets.reads, tickets.refused, tickets.streams) == (3, 1, 0)


async def test_a_ticket_answered_before_its_stream_is_that_one_event(
        rig: Rig, redis_url: str) -> None:
    """Answered before the gateway heard of it: the read says so (marked final), and the stream
    is that answer, not a stream opened at order_service."""
    final: dict[str, object] = {"state": "ordered", "order": {"id": 9}}
    with PendingTickets([], final=final) as tickets, \
            gateway_before(rig, redis_url, tickets) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            response = await c.get(ticket_path() + "/events", headers=as_user(rig, OWNER))
    assert response.status_code == 200
    assert response.content == b"data: " + json.dumps(final, separators=(",", ":")).encode() + \
        b"\n\n"
    assert (tickets.reads, tickets.streams) == (1, 0)


async def test_a_ticket_not_marked_pending_is_streamed_by_its_service(
        rig: Rig, redis_url: str) -> None:
    with PendingTickets([5], pending=False) as tickets, \
            gateway_before(rig, redis_url, tickets) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            response = await c.get(ticket_path() + "/events", headers=as_user(rig, OWNER))
    assert response.content == b'data: {"relayed":true}\n\n'
    assert (tickets.reads, tickets.streams) == (1, 1)


async def test_someone_elses_ticket_stream_is_the_services_404(
        rig: Rig, redis_url: str) -> None:
    with PendingTickets([5]) as tickets, gateway_before(rig, redis_url, tickets) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            response = await c.get(ticket_path() + "/events", headers=as_user(rig, "77"))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert tickets.streams == 0


async def test_without_held_streams_a_pending_tickets_stream_is_relayed(
        rig: Rig, redis_url: str) -> None:
    """GATEWAY_EDGE_HELD_STREAMS off: the ticket is not read first."""
    with PendingTickets([5]) as tickets, gateway_before(rig, redis_url, tickets,
                                                        held=False) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            response = await c.get(ticket_path() + "/events", headers=as_user(rig, OWNER))
    assert response.content == b'data: {"relayed":true}\n\n'
    assert (tickets.reads, tickets.streams) == (0, 1)


def test_held_streams_read_again_no_more_than_the_service_can_take() -> None:
    """Seen at 20,000 buyers: every held stream reading its ticket every 10 s was 2,000 reads
    a second, through the pool the orders wait for. Together a gateway's held streams read
    about HELD_READS_PER_SECOND a second, each at its own time."""
    few = [proxy.held_refresh_after(10) for _ in range(200)]
    assert all(0.75 * proxy.HELD_REFRESH_SECONDS <= wait <= 1.25 * proxy.HELD_REFRESH_SECONDS
               for wait in few)
    assert len(set(few)) > 100  # spread, not in step
    many = 20_000
    waits = [proxy.held_refresh_after(many) for _ in range(many)]
    reads_per_second = sum(1 / wait for wait in waits)
    assert 0.9 * proxy.HELD_READS_PER_SECOND <= reads_per_second <= 1.2 * proxy.HELD_READS_PER_SECOND


async def test_a_held_stream_reads_again_soon_after_the_subscription_came_back(
        rig: Rig, redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finals published while the gateway's subscription was down were missed: once it is back
    (the pending states forgotten), each held stream reads its ticket again within a second or
    so, not at its next read again, which may be minutes off with many streams held."""
    monkeypatch.setattr(proxy, "HELD_REFRESH_SECONDS", 60.0)
    runtimes: list[tuple[GatewayRuntime, asyncio.AbstractEventLoop]] = []

    class Recorded(GatewayRuntime):
        async def start(self) -> None:
            await super().start()
            runtimes.append((self, asyncio.get_running_loop()))

    monkeypatch.setattr(gateway_app, "GatewayRuntime", Recorded)
    with PendingTickets([5, 2]) as tickets, gateway_before(rig, redis_url, tickets) as url:
        [(runtime, loop)] = runtimes
        async with httpx.AsyncClient(base_url=url, timeout=10) as c, \
                c.stream("GET", ticket_path() + "/events", headers=as_user(rig, OWNER)) as stream:
            events = events_of(stream)
            assert await anext(events) == {"state": "waiting", "position": 5}
            loop.call_soon_threadsafe(runtime.edge_finals.forget_pending)
            assert await asyncio.wait_for(anext(events), 5) == {"state": "waiting",
                                                               "position": 2}
    assert tickets.reads == 2


def test_no_pending_state_is_used_while_the_subscription_is_down(redis_url: str) -> None:
    runtime = GatewayRuntime(gateway_settings({}, redis_url))
    runtime.edge_finals.heard(json.dumps({"ttl_ms": 5000, "finals": [],
                                          "pending": [["/t/1", OWNER, {"state": "waiting"}]]}))
    assert runtime.pending_for("/t/1", OWNER) is None  # never subscribed, or lost
    runtime._answers.connected.set()
    assert runtime.pending_for("/t/1", OWNER) == b'{"state":"waiting"}'
