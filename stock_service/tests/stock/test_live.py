"""GET /api/v1/products/{id}/live over real HTTP (a uvicorn server in the test's loop), its
changes made through the in-process app: a second process as far as Redis's pub/sub can tell.
And the gateway's sold-out answer for POST /api/v1/orders, as stock_service publishes it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from shared.broadcast import Channels, Subscription
from shared.clock import utcnow
from shared.edge_answers import ANSWERS_TOPIC, EdgeAnswers, answer_key
from shared.stock_levels import LEVELS_TOPIC, remaining_of
from shared.testing.net import free_port
from stock_service.app import create_app
from stock_service.dependencies import Resources
from stock_service.stock.live import ORDERS_ROUTE, LiveStock
from stock_service.tests.conftest import SettingsFactory, new_id
from stock_service.tests.factories import make_product, stock_parts

HEARTBEAT = 0.5


@pytest.fixture(scope="module")
async def live_url(make_settings: SettingsFactory, redis: Redis) -> AsyncIterator[str]:
    app = create_app(make_settings(live_min_interval_seconds=0.05,
                                   live_heartbeat_seconds=HEARTBEAT))
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the live server did not start"
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    await task


@dataclass
class Event:
    name: str
    event_id: str | None
    data: dict[str, object]


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next_block(self, timeout: float = 3.0) -> list[str]:
        block: list[str] = []
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if block:
                        return block
                    continue
                block.append(line)
        return block

    async def next_event(self, timeout: float = 3.0) -> Event:
        while True:
            block = await self.next_block(timeout)
            if block and not all(line.startswith(":") for line in block):
                fields = dict(line.split(": ", 1) for line in block if not line.startswith(":"))
                return Event(fields.get("event", "message"), fields.get("id"),
                             json.loads(fields["data"]))
            if not block:
                raise EOFError


async def open_stream(client: httpx.AsyncClient, product_id: int,
                      headers: dict[str, str] | None = None) -> AsyncIterator[Stream]:
    async with client.stream("GET", f"/api/v1/products/{product_id}/live",
                             headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


@pytest.fixture
async def client(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        yield http


async def test_the_level_comes_at_once_then_on_every_change(
        client: httpx.AsyncClient, resources: Resources) -> None:
    product = await make_product(resources.catalog, total=3)
    async for stream in open_stream(client, product.product_id):
        first = await stream.next_event()
        assert first.data["product_id"] == product.product_id
        assert first.data["remaining"] == 3
        assert first.data["sale_state"] == "open"
        assert str(first.data["server_time"]).endswith("Z")
        assert first.event_id
        await resources.holds.reserve(product.product_id, new_id(), user_id=7, quantity=2)
        changed = await stream.next_event()
        assert changed.data["remaining"] == 1
        assert int(str(changed.event_id)) >= int(str(first.event_id))


async def test_an_idle_stream_gets_a_comment_line(client: httpx.AsyncClient,
                                                  resources: Resources) -> None:
    product = await make_product(resources.catalog, total=3)
    async for stream in open_stream(client, product.product_id):
        await stream.next_event()
        started = time.monotonic()
        block = await stream.next_block(timeout=HEARTBEAT * 4)
        assert block
        assert all(line.startswith(":") for line in block)
        assert time.monotonic() - started >= HEARTBEAT * 0.8


async def test_a_burst_of_changes_is_coalesced_and_ends_on_the_last(
        client: httpx.AsyncClient, resources: Resources) -> None:
    product = await make_product(resources.catalog, total=40)
    async for stream in open_stream(client, product.product_id):
        await stream.next_event()
        await asyncio.gather(*(resources.holds.reserve(product.product_id, new_id(),
                                                       user_id=100 + n, quantity=1)
                               for n in range(30)))
        seen: list[object] = []
        while not seen or seen[-1] != 10:
            seen.append((await stream.next_event()).data["remaining"])
        assert len(seen) < 30, seen


async def test_a_reconnection_with_last_event_id_gets_the_current_state_at_once(
        client: httpx.AsyncClient, resources: Resources) -> None:
    product = await make_product(resources.catalog, total=5)
    async for stream in open_stream(client, product.product_id):
        first = await stream.next_event()
    await resources.holds.reserve(product.product_id, new_id(), user_id=8, quantity=1)
    await asyncio.sleep(0.2)
    assert first.event_id is not None
    async for stream in open_stream(client, product.product_id,
                                    {"Last-Event-ID": first.event_id}):
        again = await stream.next_event(timeout=1.0)
        assert again.data["remaining"] == 4


async def test_the_stream_ends_with_a_final_event_when_the_product_is_deleted(
        client: httpx.AsyncClient, resources: Resources) -> None:
    product = await make_product(resources.catalog, total=5)
    async for stream in open_stream(client, product.product_id):
        await stream.next_event()
        await resources.catalog.unregister(product.product_id)
        final = await stream.next_event()
        assert final.name == "deleted"
        assert final.data["deleted"] is True
        with pytest.raises((EOFError, StopAsyncIteration)):
            await stream.next_event()
    gone = await client.get(f"/api/v1/products/{product.product_id}/live")
    assert gone.status_code == 404


async def test_the_sale_opening_is_an_event(client: httpx.AsyncClient,
                                            resources: Resources) -> None:
    product = await make_product(resources.catalog, total=5,
                                 opens_at=utcnow() + timedelta(seconds=1))
    async for stream in open_stream(client, product.product_id):
        assert (await stream.next_event()).data["sale_state"] == "scheduled"
        assert (await stream.next_event(timeout=3)).data["sale_state"] == "open"


async def test_an_unknown_product_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/api/v1/products/{new_id()}/live")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# The gateway's answer, as a gateway would hear it


@pytest.fixture(scope="module")
async def edge(resources: Resources) -> AsyncIterator[EdgeAnswers]:
    answers = EdgeAnswers()
    prefix = resources.settings.pubsub_prefix
    subscription = Subscription(resources.settings.redis_url,
                                {Channels(prefix).name(ANSWERS_TOPIC): answers.heard})
    await subscription.start()
    yield answers
    await subscription.close()


def order(product_id: int, quantity: int = 1) -> tuple[list[tuple[bytes, bytes]], bytes]:
    return ([(b"content-type", b"application/json")],
            json.dumps({"product_id": product_id, "quantity": quantity}).encode())


async def eventually(check: object, expected: bool, timeout: float = 2.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while bool(check()) is not expected:
        assert time.monotonic() < deadline, f"still {not expected}"
        await asyncio.sleep(0.01)


async def test_sold_out_is_answered_at_the_edge_until_a_unit_comes_back(
        edge: EdgeAnswers, resources: Resources) -> None:
    product = await make_product(resources.catalog, total=1)
    pid = product.product_id

    def answered() -> bool:
        return edge.answer_for(ORDERS_ROUTE, *order(pid)) is not None

    await eventually(answered, False)
    order_id = new_id()
    await resources.holds.reserve(pid, order_id, user_id=9, quantity=1)
    await eventually(answered, True)
    answer = edge.answer_for(ORDERS_ROUTE, *order(pid))
    assert answer is not None
    assert (answer.status, answer.code) == (409, "sold_out")
    # Only requests the route takes as they are, without an Idempotency-Key.
    headers, body = order(pid, quantity=101)
    assert edge.answer_for(ORDERS_ROUTE, headers, body) is None
    headers, body = order(pid)
    assert edge.answer_for(ORDERS_ROUTE, [*headers, (b"idempotency-key", b"k")], body) is None
    # The withdrawal is heard by the time the release has answered (published before it).
    await resources.holds.release(pid, order_id)
    await eventually(answered, False, timeout=0.05)


async def test_a_hold_that_expires_withdraws_the_answer(edge: EdgeAnswers,
                                                        resources: Resources) -> None:
    product = await make_product(resources.catalog, total=1)
    pid = product.product_id
    await resources.holds.reserve(pid, new_id(), user_id=9, quantity=1,
                                  expires_at=utcnow() - timedelta(seconds=1))
    await eventually(lambda: edge.answer_for(ORDERS_ROUTE, *order(pid)) is not None, True)
    assert await resources.holds.release_expired(grace=timedelta(0)) >= 1
    await eventually(lambda: edge.answer_for(ORDERS_ROUTE, *order(pid)) is not None, False,
                     timeout=0.05)
    assert (await resources.catalog.public_level(pid)).remaining == 1


async def test_the_answer_is_refreshed_while_sold_out_and_kept_for_new_gateways(
        edge: EdgeAnswers, resources: Resources, redis: Redis) -> None:
    product = await make_product(resources.catalog, total=1)
    pid = product.product_id
    await resources.holds.reserve(pid, new_id(), user_id=9, quantity=1)
    ttl = resources.settings.edge_answer_ttl_seconds
    await asyncio.sleep(ttl * 1.5)  # past one expiry: the refresh kept it
    assert edge.answer_for(ORDERS_ROUTE, *order(pid)) is not None
    newcomer = EdgeAnswers()
    assert await newcomer.load(redis, resources.settings.pubsub_prefix) >= 1
    assert newcomer.answer_for(ORDERS_ROUTE, *order(pid)) is not None


async def test_a_product_sold_out_through_another_process_is_refreshed_here_too(
        resources: Resources, redis: Redis) -> None:
    """Another replica sold it out: this one only heard it, and still keeps its answer alive."""
    product = await make_product(resources.catalog, total=0)
    settings = resources.settings
    replica = LiveStock(redis=resources.datastores.redis, redis_url=settings.redis_url,
                        catalog=resources.catalog, prefix=settings.pubsub_prefix, min_interval=0.1,
                        heartbeat_seconds=15, edge_ttl_seconds=settings.edge_answer_ttl_seconds)
    replica.heard(f"{product.product_id} 1 0 0 0 {int(time.time() * 1000)}")
    key = answer_key(settings.pubsub_prefix, f"{{p:{product.product_id}}}", ORDERS_ROUTE,
                     str(product.product_id))
    await redis.delete(key)
    await replica.refresh_sold_out_answers()
    await replica.close()  # lets the publication it started finish
    assert await redis.pttl(key) > 0


async def test_the_hold_that_takes_the_last_units_publishes_the_sell_out_at_once(
        resources: Resources, redis: Redis) -> None:
    """Changes are published at most once per interval, but not the sell-out: the crowd waiting
    at the gateway is answered from it, and each of its requests that went on meanwhile was
    refused at order_service instead."""
    product = await make_product(resources.catalog, total=2)
    pid = product.product_id
    settings = resources.settings
    prefix = f"{settings.pubsub_prefix}replica-{uuid.uuid4().hex[:8]}:"
    replica = LiveStock(redis=resources.datastores.redis, redis_url=settings.redis_url,
                        catalog=resources.catalog, prefix=prefix, min_interval=60,
                        heartbeat_seconds=15, edge_ttl_seconds=settings.edge_answer_ttl_seconds)
    stock = stock_parts(resources)
    stock.admission.on_level_change = replica.changed
    key = answer_key(prefix, f"{{p:{pid}}}", ORDERS_ROUTE, str(pid))
    try:
        # Heard on sale with units left, and published once: the next change waits a minute.
        replica.heard(f"{pid} 1 2 0 0 {int(time.time() * 1000)}")
        replica.changed(pid)
        await stock.holds.reserve(pid, new_id(), user_id=1, quantity=1)
        await stock.holds.reserve(pid, new_id(), user_id=2, quantity=1)  # the last one
        await eventually_async(lambda: redis.exists(key), 1)
    finally:
        await replica.close()


async def eventually_async(read: object, expected: object, timeout: float = 2.0) -> None:
    assert callable(read)
    deadline = time.monotonic() + timeout
    while await read() != expected:
        assert time.monotonic() < deadline, f"not {expected} within {timeout} s"
        await asyncio.sleep(0.02)


async def test_an_answer_is_no_longer_refreshed_past_its_window(
        resources: Resources, redis: Redis) -> None:
    product = await make_product(resources.catalog, total=0)
    settings = resources.settings
    # A prefix of its own: the service's own LiveStock publishes this sold-out product's answer
    # too (its change, its refresh), under the service's prefix, whenever its loop gets to it.
    prefix = f"{settings.pubsub_prefix}replica-{uuid.uuid4().hex[:8]}:"
    replica = LiveStock(redis=resources.datastores.redis, redis_url=settings.redis_url,
                        catalog=resources.catalog, prefix=prefix, min_interval=0.1,
                        heartbeat_seconds=15, edge_ttl_seconds=settings.edge_answer_ttl_seconds,
                        edge_refresh_window_seconds=0.5)
    replica.heard(f"{product.product_id} 1 0 0 0 {int(time.time() * 1000)}")
    key = answer_key(prefix, f"{{p:{product.product_id}}}", ORDERS_ROUTE, str(product.product_id))
    try:
        await replica.refresh_sold_out_answers()  # within its window: published
        for _ in range(100):
            if await redis.exists(key):
                break
            await asyncio.sleep(0.02)
        assert await redis.exists(key) == 1
        await asyncio.sleep(0.6)
        await redis.delete(key)
        await replica.refresh_sold_out_answers()  # past it: left to lapse
    finally:
        await replica.close()  # lets any publication it started finish
    assert await redis.exists(key) == 0


async def test_a_level_message_not_understood_is_logged_and_ignored(resources: Resources) -> None:
    """Its log line once named a field `message`, which logging keeps for itself: the handler
    raised KeyError inside the subscription instead of ignoring the message."""
    settings = resources.settings
    replica = LiveStock(redis=resources.datastores.redis, redis_url=settings.redis_url,
                        catalog=resources.catalog, prefix=settings.pubsub_prefix, min_interval=0.1,
                        heartbeat_seconds=15, edge_ttl_seconds=settings.edge_answer_ttl_seconds)
    replica.heard("not a level")
    await replica.close()


async def test_other_services_read_a_product_s_units_left_from_its_levels(
        resources: Resources) -> None:
    """order_service reads the units left from the levels channel (shared/stock_levels.py):
    near the end of the stock its line is admitted by one process at a time."""
    heard: list[tuple[int, int]] = []

    def hear(message: str) -> None:
        level = remaining_of(message)
        assert level is not None, message
        heard.append(level)

    prefix = resources.settings.pubsub_prefix
    subscription = Subscription(resources.settings.redis_url,
                                {Channels(prefix).name(LEVELS_TOPIC): hear})
    await subscription.start()
    try:
        product = await make_product(resources.catalog, total=5)
        pid = product.product_id
        await resources.holds.reserve(pid, new_id(), user_id=9, quantity=2)
        await eventually(lambda: (pid, 3) in heard, True)
    finally:
        await subscription.close()
