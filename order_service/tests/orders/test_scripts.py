"""The line's Lua steps (orders/scripts.py) on a real Redis, and on a Redis Cluster of the test's
own (each step keeps its keys in the product's slot): arrival order, one place per buyer, the
longest line, a lease that runs out (a replica that died), one answer per place, the sell-out,
and the forgetting of answered places."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from order_service.orders.line import (
    OrderLine,
    TicketWatch,
    _Ask,
    _Batches,
    key_field,
    new_ticket,
    ticket_body,
)
from order_service.orders.scripts import PRODUCTS_KEY, LineKeys, LineScripts, NewPlace
from shared.testing.redis_cluster import redis_cluster

CHANNEL = f"test-{os.urandom(4).hex()}:line-tickets"


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


@pytest.fixture(params=["redis", "cluster"])
async def client(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Redis]:
    if request.param == "cluster":
        cluster = RedisCluster.from_url(request.getfixturevalue("cluster_url"),
                                        decode_responses=True)
        yield cluster  # type: ignore[misc]
        await cluster.aclose()
        return
    plain = Redis.from_url(redis_url, decode_responses=True)
    yield plain
    await plain.aclose()


def scripts_on(client: Redis, *, lease_ms: int = 15_000, keep_ms: int = 900_000,
               max_waiting: int = 100, max_deciding: int = 64) -> LineScripts:
    return LineScripts(client, keep_ms=keep_ms, lease_ms=lease_ms, max_waiting=max_waiting,
                       tickets_channel=CHANNEL, open_channel=CHANNEL + "-open",
                       max_deciding=max_deciding)


def product() -> int:
    return int.from_bytes(os.urandom(5), "big") + 1


def place(product_id: int, user_id: int, arrived_us: int, *, key: str = "",
          quantity: int = 1, mode: str = "join", request_id: str = "") -> NewPlace:
    return NewPlace(mode=mode, ticket=new_ticket(product_id), user_id=user_id, quantity=quantity, key=key,
                    key_field=key_field(user_id, key) if key else "", fingerprint="fp",
                    arrived_us=arrived_us, request_id=request_id)


async def test_places_are_admitted_in_arrival_order_whatever_order_they_were_taken_in(
    client: Redis
) -> None:
    scripts, product_id = scripts_on(client), product()
    places = [place(product_id, user, 1_800_000_000_000_000 + user) for user in range(1, 41)]
    shuffled = random.sample(places, len(places))
    for batch in (shuffled[:13], shuffled[13:30], shuffled[30:]):
        joined = await scripts.join(product_id, batch)
        assert all(answer.record is None and answer.ticket for answer in joined)
    admitted: list[str] = []
    while True:
        claimed, waiting, *_ = await scripts.claim(product_id, 7)
        if not claimed:
            assert waiting == 0
            break
        admitted += [c.ticket for c in claimed]
    assert admitted == [p.ticket for p in places]


async def test_a_buyer_has_one_place_and_a_key_finds_it_again(client: Redis) -> None:
    scripts, product_id = scripts_on(client), product()
    first = place(product_id, 7, 100, key="k1")
    [joined] = await scripts.join(product_id, [first])
    assert (joined.ticket, joined.position) == (first.ticket, 1)
    # Asking again (another request, another quantity): the same place, still first.
    [again] = await scripts.join(product_id, [place(product_id, 7, 200, quantity=3)])
    assert again.ticket == first.ticket
    assert again.record is not None
    assert (again.record.state, again.record.quantity, again.position) == ("waiting", 1, 1)
    # Answered, the buyer's place is free again; the key still finds the answer.
    [claimed], *_ = await scripts.claim(product_id, 1)
    answer = (claimed.ticket, "ordered", '{"state":"ordered"}')
    assert await scripts.finish(product_id, [answer]) == 1
    [by_key] = await scripts.join(product_id, [place(product_id, 7, 300, key="k1")])
    assert by_key.ticket == first.ticket
    assert by_key.record is not None
    assert by_key.record.state == "ordered"
    [new] = await scripts.join(product_id, [place(product_id, 7, 400)])
    assert new.record is None
    assert new.ticket != first.ticket


async def test_a_line_at_its_longest_takes_no_more(client: Redis) -> None:
    scripts, product_id = scripts_on(client, max_waiting=3), product()
    joined = await scripts.join(product_id, [place(product_id, u, u) for u in range(1, 6)])
    assert [answer.ticket is not None for answer in joined] == [True] * 3 + [False] * 2
    await scripts.claim(product_id, 1)  # one admitted: a place frees
    [more] = await scripts.join(product_id, [place(product_id, 9, 9)])
    assert more.ticket is not None


async def test_a_place_whose_lease_ran_out_is_admitted_again_and_answered_once(
    client: Redis
) -> None:
    """The replica deciding it died: another admits it again (its second attempt, which looks
    for the order its key made); whichever answers first is the answer."""
    scripts, product_id = scripts_on(client, lease_ms=200), product()
    taken = place(product_id, 5, 1)
    await scripts.join(product_id, [taken, place(product_id, 6, 2)])
    [first], waiting, deciding, _ = await scripts.claim(product_id, 1)
    assert (first.ticket, first.record.attempts, waiting, deciding) == (taken.ticket, 1, 1, 1)
    await asyncio.sleep(0.3)
    claimed, *_ = await scripts.claim(product_id, 2)
    assert (claimed[0].ticket, claimed[0].record.attempts) == (taken.ticket, 2)
    assert await scripts.finish(product_id, [(taken.ticket, "ordered", '{"n":1}')]) == 1
    # The first replica's late answer changes nothing.
    assert await scripts.finish(product_id, [(taken.ticket, "refused", '{"n":2}')]) == 0
    [(record, _)] = await scripts.read(product_id, [taken.ticket])
    assert record is not None
    assert (record.state, record.body) == ("ordered", '{"n":1}')


async def test_a_noted_order_id_is_replaced_only_where_it_still_stands(client: Redis) -> None:
    """A decision that found no hold under the noted id notes its new one in the old one's
    stead, never over an id another decider noted since, nor once the place is answered."""
    scripts, product_id = scripts_on(client), product()
    taken = place(product_id, 5, 1)
    await scripts.join(product_id, [taken])
    await scripts.claim(product_id, 1)
    await scripts.note(product_id, [(taken.ticket, 11)])
    assert not await scripts.note_again(product_id, taken.ticket, replacing=10, order_id=12)
    assert await scripts.note_again(product_id, taken.ticket, replacing=11, order_id=12)
    [(record, _)] = await scripts.read(product_id, [taken.ticket])
    assert record is not None
    assert record.order_id == 12
    assert await scripts.finish(product_id, [(taken.ticket, "ordered", '{"n":1}')]) == 1
    assert not await scripts.note_again(product_id, taken.ticket, replacing=12, order_id=13)
    assert not await scripts.note_again(product_id, new_ticket(product_id), replacing=12,
                                        order_id=13)


async def test_a_sell_out_refuses_every_waiting_place_in_one_step(client: Redis) -> None:
    scripts, product_id = scripts_on(client), product()
    # Each place keeps the id of the request that took it (the last one none: a record kept
    # before places kept it).
    places = [place(product_id, u, u, request_id=f"req-{u:04}" if u < 5 else "")
              for u in range(1, 6)]
    await scripts.join(product_id, places)
    [deciding], *_ = await scripts.claim(product_id, 1)
    watch = TicketWatch()
    feeds = {p.ticket: watch.open(p.ticket) for p in places}
    problem: dict[str, Any] = {"status": 409, "code": "sold_out", "request_id": None}
    pubsub = client.pubsub() if isinstance(client, Redis) and not isinstance(
        client, RedisCluster) else None
    if pubsub is not None:
        await pubsub.subscribe(CHANNEL)
    assert await scripts.refuse_waiting(product_id, problem) == 4
    records = await scripts.read(product_id, [p.ticket for p in places])
    states = [record.state if record else None for record, _ in records]
    assert states == ["deciding"] + ["refused"] * 4
    bodies = [json.loads(record.body or "") for record, _ in records[1:]]  # type: ignore[union-attr]
    body = bodies[0]
    # The problem names the request that took the place, as the 409 of that POST would.
    assert body == {"ticket": places[1].ticket, "product_id": product_id, "position": 2,
                    "state": "refused", "problem": {**problem, "request_id": "req-0002"}}
    assert [b["problem"]["request_id"] for b in bodies] == ["req-0002", "req-0003", "req-0004",
                                                             None]
    if pubsub is not None:
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        watch.heard(message["data"])
        await pubsub.aclose()
        assert [feeds[p.ticket].closed for p in places] == [False] + [True] * 4
        assert [feeds[p.ticket].value for p in places[1:]] == bodies
    # The refused buyers may take a new place; the one being decided still has its own.
    again = await scripts.join(product_id, [place(product_id, 1, 10), place(product_id, 2, 11)])
    assert again[0].ticket == deciding.ticket
    assert again[1].record is None


async def test_answered_places_are_forgotten_after_their_keep(client: Redis) -> None:
    scripts, product_id = scripts_on(client, keep_ms=100), product()
    taken = place(product_id, 3, 1, key="k")
    await scripts.join(product_id, [taken])
    await scripts.claim(product_id, 1)
    await scripts.finish(product_id, [(taken.ticket, "ordered", "{}")])
    await asyncio.sleep(0.2)
    await scripts.join(product_id, [place(product_id, 4, 2)])  # each step forgets some
    [(record, _)] = await scripts.read(product_id, [taken.ticket])
    assert record is None
    keys = LineKeys.of(product_id)
    assert await client.hget(keys.keys, key_field(3, "k")) is None
    assert 0 < await client.pttl(keys.waiting) <= 200


async def test_the_sweep_set_lists_a_product_once_marked(client: Redis) -> None:
    scripts, product_id = scripts_on(client), product()
    await scripts.mark_open(product_id)
    assert product_id in await scripts.open_lines()
    await scripts.forget_if_empty(product_id)
    assert product_id not in await scripts.open_lines()
    assert isinstance(PRODUCTS_KEY, str)


async def test_a_place_goes_straight_on_only_while_nobody_waits_and_room_is_left(
    client: Redis
) -> None:
    """The judgment of a request holding a free slot at some replica is the line's, in Redis:
    straight on (being decided) while nobody waits and fewer than max_deciding are decided,
    else a place behind the others."""
    scripts, product_id = scripts_on(client, max_deciding=2), product()
    at = 1_800_000_000_000_000
    first, second = await scripts.join(product_id, [place(product_id, 1, at, mode="go"),
                                                    place(product_id, 2, at + 1, mode="go")])
    assert first.go
    assert second.go
    [third] = await scripts.join(product_id, [place(product_id, 3, at + 2, mode="go")])
    assert not third.go
    assert third.position == 1
    [fourth] = await scripts.join(product_id, [place(product_id, 4, at + 3, mode="go")])
    assert not fourth.go
    assert fourth.position == 2
    # Room for one more: the earliest waiting is admitted, and none beyond the two.
    assert await scripts.finish(product_id, [(str(first.ticket), "ordered", "{}")]) == 1
    claimed, waiting, deciding, _ = await scripts.claim(product_id, 5)
    assert [c.ticket for c in claimed] == [third.ticket]
    assert (waiting, deciding) == (1, 2)
    # Someone waits: a request with a free slot takes its place behind them.
    assert await scripts.finish(product_id, [(str(second.ticket), "ordered", "{}"),
                                             (str(third.ticket), "ordered", "{}")]) == 2
    [fifth] = await scripts.join(product_id, [place(product_id, 5, at + 4, mode="go")])
    assert not fifth.go
    assert fifth.position == 2


async def test_find_answers_only_the_place_a_buyer_has(client: Redis) -> None:
    scripts, product_id = scripts_on(client), product()
    at = 1_800_000_000_000_000
    [none] = await scripts.join(product_id, [place(product_id, 1, at, key="k", mode="find")])
    assert none.ticket is None
    [went] = await scripts.join(product_id, [place(product_id, 1, at, key="k", mode="go")])
    assert went.go
    [found] = await scripts.join(product_id, [place(product_id, 1, at + 5, key="k",
                                                    mode="find")])
    assert found.ticket == went.ticket
    assert found.record is not None
    assert found.record.state == "deciding"
    # A place forgotten (its request answered 5xx) is found no more.
    await scripts.drop(product_id, [str(went.ticket)])
    [gone] = await scripts.join(product_id, [place(product_id, 1, at, key="k", mode="find")])
    assert gone.ticket is None


async def test_a_watched_ticket_hears_its_position_move_up_from_one_read(
    client: Redis
) -> None:
    scripts, product_id = scripts_on(client), product()
    places = [place(product_id, user, 1_800_000_000_000_000 + user) for user in range(1, 11)]
    await scripts.join(product_id, places)
    line = OrderLine(scripts, fingerprint=lambda _: "fp")
    last, first = places[-1].ticket, places[0].ticket
    feeds = {ticket: line.watch.open(ticket) for ticket in (first, last)}
    line.watch.shown(last, 10)
    line.watch.shown(first, 1)
    await line.refresh_positions()
    # Nothing moved: nothing is sent.
    assert [feed.version for feed in feeds.values()] == [0, 0]
    claimed, *_ = await scripts.claim(product_id, 3)
    assert [c.ticket for c in claimed] == [p.ticket for p in places[:3]]
    await line.refresh_positions()
    # The last place moved up by the three admitted; the first, being decided, waits for its
    # answer (it has no place in the line any more).
    assert feeds[last].version == 1
    assert not feeds[last].closed
    assert feeds[last].value == {"ticket": last, "product_id": product_id, "position": 7,
                                 "state": "waiting"}
    assert feeds[first].version == 0
    for ticket in (first, last):
        line.watch.close(ticket)
    assert line.watch.waiting() == {}
    # Read, a place being decided is at the front, whatever its position when it was taken.
    [(record, position)] = await scripts.read(product_id, [places[2].ticket])
    assert record is not None
    assert ticket_body(places[2].ticket, product_id, record, position)["position"] == 1


async def test_a_lease_its_replica_renews_is_not_admitted_again(client: Redis) -> None:
    """The replica deciding a place renews its lease while it decides: another replica admits
    it again only once the renewals stop (the replica died) and a lease has passed."""
    scripts, product_id = scripts_on(client, lease_ms=300), product()
    [joined] = await scripts.join(product_id, [place(product_id, 1, 1_800_000_000_000_000)])
    [claimed], *_ = await scripts.claim(product_id, 1)
    assert claimed.ticket == joined.ticket
    for _ in range(3):  # 0.6 s in all, twice the lease, renewed every 0.2 s
        await asyncio.sleep(0.2)
        assert await scripts.renew(product_id, [str(joined.ticket)]) == 1
        assert (await scripts.claim(product_id, 1))[0] == []
    await asyncio.sleep(0.4)  # no renewal: the lease runs out
    [again], *_ = await scripts.claim(product_id, 1)
    assert again.ticket == joined.ticket
    assert again.record.attempts == 2
    # A place answered meanwhile is renewed no more.
    await scripts.finish(product_id, [(str(joined.ticket), "ordered", "{}")])
    assert await scripts.renew(product_id, [str(joined.ticket)]) == 0


async def test_places_whose_answers_wait_their_turn_leave_room_for_the_next(
    client: Redis
) -> None:
    """max_deciding bounds the places being decided; a replica's places already decided, their
    answers waiting for earlier ones' (drain.py AnswersInTurn), are not counted against it."""
    scripts, product_id = scripts_on(client, max_deciding=2), product()
    await scripts.join(product_id, [place(product_id, u, u) for u in range(1, 7)])
    first, *_ = await scripts.claim(product_id, 5)
    assert len(first) == 2
    assert (await scripts.claim(product_id, 5))[0] == []
    # One of the two decided, its answer waiting: one more may be admitted, and only one.
    more, waiting, deciding, _ = await scripts.claim(product_id, 5, answered=1)
    assert (len(more), waiting, deciding) == (1, 3, 3)
    assert (await scripts.claim(product_id, 5, answered=1))[0] == []


async def test_within_one_batch_the_earliest_arrival_goes_straight_on(client: Redis) -> None:
    # Asked in one loop turn in the order the requests happened to reach this process: the
    # place with the earlier gateway stamp is the one admitted when only one may be.
    scripts, product_id = scripts_on(client, max_deciding=1), product()
    batches = _Batches(scripts)
    loop = asyncio.get_running_loop()
    later = _Ask(product_id, place(product_id, 1, 1_800_000_000_000_900, mode="go"), None,
                 loop.create_future())
    earlier = _Ask(product_id, place(product_id, 2, 1_800_000_000_000_100, mode="go"), None,
                   loop.create_future())
    batches.ask(later)
    batches.ask(earlier)
    assert (await earlier.future).go
    assert not (await later.future).go


async def test_one_replica_drains_a_product_s_line_at_a_time(client: Redis) -> None:
    """Two replicas deciding neighbouring places race for the last units (the later reserve may
    reach stock first): while one replica admits a product's places, another admits none of
    them, nor lets a later arrival go straight on, until the first lets the line go."""
    a, b, product_id = scripts_on(client), scripts_on(client), product()
    at = 1_800_000_000_000_000
    places = [place(product_id, user, at + user) for user in range(1, 6)]
    await a.join(product_id, places)
    first, waiting, deciding, elsewhere = await a.claim(product_id, 2)
    assert ([c.ticket for c in first], waiting, deciding, elsewhere) == (
        [p.ticket for p in places[:2]], 3, 2, False)
    # B's drain, with slots free, admits nothing while A drains the line.
    assert await b.claim(product_id, 5) == ([], 3, 2, True)
    # Nobody waits any more once A admitted the rest; a later arrival at B still takes a
    # place behind them instead of going straight on beside A's decisions.
    rest, *_ = await a.claim(product_id, 5)
    assert [c.ticket for c in rest] == [p.ticket for p in places[2:]]
    [later] = await b.join(product_id, [place(product_id, 9, at + 9, mode="go")])
    assert (later.go, later.position) == (False, 1)
    # Taking places does not lengthen A's hold: it lasts a lease after A's last renewal.
    assert 0 < await client.pttl(LineKeys.of(product_id).drainer) <= 15_000
    # A lets the line go (its drain stopped): B drains from then.
    await a.release(product_id)
    [admitted], waiting, _, elsewhere = await b.claim(product_id, 5)
    assert (admitted.ticket, waiting, elsewhere) == (later.ticket, 0, False)
    assert (await a.claim(product_id, 5))[3]


async def test_a_replica_that_stops_renewing_lets_another_drain_the_line(client: Redis) -> None:
    """A's renewals (its claims, and the sweep's renewals of the places it decides) keep the
    line its own; once they renew only its places (its drain failed), or stop (A died), B
    drains it a lease later, the places A was deciding once their own leases ran out."""
    # A lease of 2 s and steps 0.6 s or more from each deadline: a loaded machine's pauses.
    a, b = scripts_on(client, lease_ms=2_000), scripts_on(client, lease_ms=2_000)
    product_id = product()
    places = [place(product_id, user, user) for user in range(1, 4)]
    await a.join(product_id, places)
    [decided], *_ = await a.claim(product_id, 1)
    for _ in range(3):  # 2.4 s in all, past the lease, renewed every 0.8 s
        await asyncio.sleep(0.8)
        assert await a.renew(product_id, [decided.ticket]) == 1
        assert (await b.claim(product_id, 5))[0] == []
    # Then its places' leases alone: the line's hold runs out, B drains the line, and admits
    # A's place once its lease has run out too.
    await asyncio.sleep(1.4)
    assert await a.renew(product_id, [decided.ticket], line=False) == 1
    await asyncio.sleep(1.2)  # A's hold ran out 0.6 s ago; its place's lease runs 0.8 s more
    waited, waiting, _, elsewhere = await b.claim(product_id, 5)
    assert [c.ticket for c in waited] == [p.ticket for p in places[1:]]
    assert (waiting, elsewhere) == (0, False)
    await asyncio.sleep(1.6)
    [again], *_ = await b.claim(product_id, 5)
    assert (again.ticket, again.record.attempts) == (decided.ticket, 2)


async def test_far_from_the_end_every_replica_admits_places_and_nobody_holds_the_line(
    client: Redis
) -> None:
    """Claimed without `exclusive` (many units left), A and B both admit places, and a later
    arrival at B goes straight on; A, asking for the line near the end, takes it, and lets it
    go when it claims without asking again."""
    a, b, product_id = scripts_on(client), scripts_on(client), product()
    places = [place(product_id, user, user) for user in range(1, 7)]
    await a.join(product_id, places)
    first, *_ = await a.claim(product_id, 2, exclusive=False)
    second, waiting, _, elsewhere = await b.claim(product_id, 2, exclusive=False)
    assert [c.ticket for c in first + second] == [p.ticket for p in places[:4]]
    assert (waiting, elsewhere) == (2, False)
    assert await client.exists(LineKeys.of(product_id).drainer) == 0
    third, *_ = await a.claim(product_id, 1)
    assert [c.ticket for c in third] == [places[4].ticket]
    assert (await b.claim(product_id, 5, exclusive=False))[3]
    await a.claim(product_id, 0, exclusive=False)
    [last], *_ = await b.claim(product_id, 5, exclusive=False)
    assert last.ticket == places[5].ticket
    [straight] = await b.join(product_id, [place(product_id, 9, 9, mode="go")])
    assert straight.go


async def test_a_look_with_nothing_to_admit_does_not_take_the_line(client: Redis) -> None:
    """A sweep's look at a line with nobody waiting takes nothing: another replica's request
    still goes straight on."""
    a, b, product_id = scripts_on(client), scripts_on(client), product()
    [straight] = await b.join(product_id, [place(product_id, 1, 1, mode="go")])
    assert straight.go
    assert await a.claim(product_id, 5) == ([], 0, 1, False)
    [next_one] = await b.join(product_id, [place(product_id, 2, 2, mode="go")])
    assert next_one.go


def publishing_finals(client: Redis) -> tuple[LineScripts, str]:
    """The scripts, publishing for the edge on a channel of their own (returned)."""
    channel = f"test-{os.urandom(4).hex()}:edge-finals"
    return LineScripts(client, keep_ms=900_000, lease_ms=15_000, max_waiting=100,
                       tickets_channel=CHANNEL, open_channel=CHANNEL + "-open",
                       finals_channel=channel, finals_ttl_ms=30_000), channel


async def _finals_heard(client: Redis, channel: str, step: Any) -> list[Any]:
    """The edge finals `step()` published on `channel` (shared/edge_finals.py), as the gateway
    reads them: one message's entries."""
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    try:
        await step()
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
    finally:
        await pubsub.aclose()
    parsed = json.loads(message["data"])
    assert parsed["ttl_ms"] == 30_000
    finals: list[Any] = parsed["finals"]
    return finals


async def test_answers_given_and_a_sell_outs_refusals_are_published_for_the_edge(
        redis_url: str) -> None:
    """For the gateway to answer their owners' reads (shared/edge_finals.py): each answer given
    (FINISH) and each refusal of the sell-out (REFUSE_WAITING) with the ticket's path, its
    buyer and the body its GET answers, in the same step that gives it."""
    client = Redis.from_url(redis_url, decode_responses=True)
    scripts, channel = publishing_finals(client)
    product_id = product()
    places = [place(product_id, user, user) for user in (7, 8, 9)]
    try:
        await scripts.join(product_id, places)
        [decided], *_ = await scripts.claim(product_id, 1)
        body = {"ticket": decided.ticket, "product_id": product_id, "position": 1,
                "state": "ordered", "order": {"id": 1}}

        async def answer() -> None:
            await scripts.finish(product_id, [(decided.ticket, "ordered", json.dumps(body))])

        assert await _finals_heard(client, channel, answer) == [
            [f"/api/v1/orders/tickets/{decided.ticket}", "7", body]]

        async def sell_out() -> None:
            await scripts.refuse_waiting(product_id, {"status": 409, "code": "sold_out"})

        refused = await _finals_heard(client, channel, sell_out)
        records = await scripts.read(product_id, [p.ticket for p in places[1:]])
        assert refused == [[f"/api/v1/orders/tickets/{p.ticket}", str(p.user_id),
                            json.loads(record.body or "")]
                           for p, (record, _) in zip(places[1:], records, strict=True)
                           if record is not None]
        assert len(refused) == 2
    finally:
        await client.aclose()


async def test_places_taken_in_line_are_published_pending_for_the_edge(redis_url: str) -> None:
    """In the step that takes them (JOIN), each new place in line with the body its GET
    answers, so a gateway holds its stream without reading it (shared/edge_finals.py); a place
    admitted at once (its request answered with the order) or found again is not."""
    client = Redis.from_url(redis_url, decode_responses=True)
    scripts, channel = publishing_finals(client)
    product_id = product()
    straight = place(product_id, 6, 1, mode="go")
    places = [place(product_id, user, user) for user in (7, 8)]
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    try:
        await scripts.join(product_id, [straight, *places])
        await scripts.join(product_id, [place(product_id, 7, 9)])  # 7's own place again
        messages = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=1)
                    if message is not None:
                        messages.append(json.loads(message["data"]))
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert messages == [{"ttl_ms": 30_000, "finals": [], "pending": [
        [f"/api/v1/orders/tickets/{p.ticket}", str(p.user_id),
         {"ticket": p.ticket, "product_id": product_id, "position": n, "state": "waiting"},
         [f"line:{product_id}", 0]]
        for n, p in enumerate(places, start=1)]}]


async def test_places_leaving_the_lines_front_are_counted_for_the_edge(redis_url: str) -> None:
    """Each admission from the line (CLAIM) publishes how many places have left its front, and
    a place taken later is published with the count it was taken at: from the two a gateway
    moves a held stream's position without reading its ticket (shared/edge_finals.py)."""
    client = Redis.from_url(redis_url, decode_responses=True)
    scripts, channel = publishing_finals(client)
    product_id = product()
    queue = f"line:{product_id}"
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)

    async def heard() -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    parsed: dict[str, Any] = json.loads(message["data"])
                    return parsed

    try:
        await scripts.join(product_id, [place(product_id, user, user) for user in (1, 2, 3)])
        assert [entry[3] for entry in (await heard())["pending"]] == [[queue, 0]] * 3
        await scripts.claim(product_id, 2)
        assert (await heard())["moved"] == [[queue, 2]]
        later = place(product_id, 4, 4)
        await scripts.join(product_id, [later])
        [entry] = (await heard())["pending"]
        assert entry[2]["position"] == 2  # behind user 3
        assert entry[3] == [queue, 2]
        await scripts.claim(product_id, 1)
        assert (await heard())["moved"] == [[queue, 3]]  # `later` is at the front now
        await scripts.claim(product_id, 0)  # admitting none moves nothing
        await scripts.join(product_id, [place(product_id, 5, 5)])
        assert "moved" not in await heard()
        assert 0 < await client.pttl(LineKeys.of(product_id).moved) <= 2 * 900_000
    finally:
        await pubsub.aclose()
        await client.aclose()
