"""Live stock: every change of a product's live state published once, heard by every process,
pushed to the open `/live` streams and to the gateway's sold-out answer.

Publication. StockAdmission signals each change made here (`StockAdmission.on_level_change`,
called where it forgets its remembered view). `LiveStock.changed` then runs PUBLISH_LEVEL, one Lua
script that reads the product's state and Redis's clock and, in the same atomic step, publishes
it on `<prefix>stock-levels` and sets or withdraws the gateway's answer for `POST /api/v1/orders`
(shared/edge_answers.py): `409 sold_out` while the sale is open and nothing remains, withdrawn
otherwise. Because the state is read and published in one step, publications reach listeners in
the order of the states they show: a stale "sold out" can never follow the withdrawal that units
coming back caused. Publications are coalesced per product (at most one per `min_interval`),
except when the last state heard was sold out: then units coming back are published at once,
before the call that gave them back answers its caller; and except the sell-out itself (a hold
took the last units), published at once too: the crowd waiting at the gateway is answered from
it, and a publication held back to the next interval kept it waiting up to `min_interval`
longer, while each of its requests went on to order_service to be refused there. The answer
lives `edge_ttl` and is refreshed while the product stays sold out, so a withdrawal that is lost
(a crash between the units' return and the publication) costs at most that long.

Listening. One subscription per process (shared/broadcast.py) keeps the newest level of every
product heard; a product with open streams has a `Feed` that wakes them, coalesced, and again
at the sale's opening and closing (the state is judged by Redis's clock, carried forward).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from shared.broadcast import Channels, Feed, Subscription
from shared.contracts import MAX_ID
from shared.dependencies import AppResources
from shared.edge_answers import ANSWERS_TOPIC, Answer, RequestShape, answer_key, answer_message
from shared.errors import ValidationFailed, problem_responses
from shared.internal.stock import SoldOut
from shared.sale_window import SaleState, sale_state_at_ms
from shared.sse import EventStreamResponse, sse_event
from shared.stock_levels import LEVELS_TOPIC, parse_level
from stock_service.stock.catalog import CatalogService
from stock_service.stock.errors import ProductNotFound, StockRebuilding
from stock_service.stock.scripts import ProductKeys

logger = logging.getLogger("stock_service.live")

ORDERS_ROUTE = "POST /api/v1/orders"
# The requests order_service's route takes as they are (orders.schemas.OrderCreate), without an
# Idempotency-Key (whose retry gets its first answer back): the only ones answered at the edge.
ORDER_SHAPE = RequestShape(key_field="product_id",
                           int_fields={"product_id": (1, MAX_ID), "quantity": (1, 100)},
                           unless_headers=frozenset({b"idempotency-key"}))
SOLD_OUT_ANSWER = Answer(SoldOut.status, SoldOut.code, SoldOut.title, SoldOut().detail)
# Levels kept for products nobody streams (the sold-out refresh needs them); past this, forgotten.
MAX_LEVELS = 100_000

# KEYS: meta rebuilding answer; ARGV: levels_channel answers_channel product_id ttl_ms
# answer_message_without_ttl withdrawal_message.
# Returns active remaining opens closes now rebuilding ('' for active: Redis has no state).
PUBLISH_LEVEL = """
local m = redis.call('HMGET', KEYS[1], 'active', 'remaining', 'opens', 'closes')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rebuilding = redis.call('EXISTS', KEYS[2])
local active = m[1] or ''
local remaining = tonumber(m[2] or '0')
local opens, closes = tonumber(m[3] or '0'), tonumber(m[4] or '0')
local sold_out = active == '1' and rebuilding == 0 and remaining <= 0
  and (opens == 0 or now >= opens) and (closes == 0 or now < closes)
if sold_out then
  local ttl = tonumber(ARGV[4])
  if closes > 0 and closes - now < ttl then ttl = closes - now end
  local message = '{"ttl_ms":' .. ttl .. ',' .. string.sub(ARGV[5], 2)
  redis.call('SET', KEYS[3], message, 'PX', ttl)
  redis.call('PUBLISH', ARGV[2], message)
else
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', ARGV[2], ARGV[6])
end
if rebuilding == 0 and active ~= '' then
  redis.call('PUBLISH', ARGV[1], table.concat({ARGV[3], active, remaining, opens, closes, now}, ' '))
end
return {active, tostring(remaining), tostring(opens), tostring(closes), tostring(now),
        tostring(rebuilding)}
"""


@dataclass(frozen=True)
class Level:
    """A product's live state as published, with Redis's clock at the moment it was read."""

    product_id: int
    active: bool
    remaining: int
    opens_ms: int
    closes_ms: int
    now_ms: int
    heard_at: float = field(default_factory=time.monotonic, compare=False)

    @classmethod
    def parse(cls, message: str) -> Level:
        return cls(*parse_level(message))

    def same_state(self, other: Level) -> bool:
        return (self.active, self.remaining, self.opens_ms, self.closes_ms) == \
            (other.active, other.remaining, other.opens_ms, other.closes_ms)

    def server_ms(self) -> int:
        """Redis's clock now, carried forward from the reading by ours."""
        return self.now_ms + int((time.monotonic() - self.heard_at) * 1000)

    def sale_state(self) -> SaleState:
        return sale_state_at_ms(self.opens_ms, self.closes_ms, self.server_ms())

    def sold_out(self) -> bool:
        return self.active and self.remaining <= 0

    def next_boundary_in(self) -> float | None:
        """Seconds until the sale opens or closes, if it still will."""
        now = self.server_ms()
        ahead = [ms for ms in (self.opens_ms, self.closes_ms) if ms and ms > now]
        return (min(ahead) - now) / 1000 if ahead else None


def render_level(level: Level) -> bytes:
    """The stream's event: the /stock body plus server_time; a deleted product's final event."""
    server_ms = level.server_ms()
    server_time = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(server_ms / 1000)) \
        + f".{server_ms % 1000:03d}Z"
    if not level.active:
        return sse_event({"product_id": level.product_id, "deleted": True,
                          "server_time": server_time}, event="deleted",
                         event_id=str(level.now_ms))
    return sse_event({"product_id": level.product_id, "remaining": level.remaining,
                      "sale_state": level.sale_state(), "server_time": server_time},
                     event_id=str(level.now_ms))


@dataclass
class _Publishing:
    last: float = float("-inf")
    running: bool = False
    again: bool = False
    again_at_once: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Watched:
    feed: Feed[Level]
    listeners: int = 0
    boundary: asyncio.TimerHandle | None = None


class LiveStock:
    def __init__(self, *, redis: Redis | RedisCluster, redis_url: str, catalog: CatalogService,
                 prefix: str, min_interval: float, heartbeat_seconds: float,
                 edge_ttl_seconds: float, edge_refresh_window_seconds: float = 1800.0) -> None:
        self.redis = redis
        self.catalog = catalog
        self.prefix = prefix
        channels = Channels(prefix)
        self.levels_channel = channels.name(LEVELS_TOPIC)
        self.answers_channel = channels.name(ANSWERS_TOPIC)
        self.min_interval = min_interval
        self.heartbeat_seconds = heartbeat_seconds
        self.edge_ttl_ms = max(1, int(edge_ttl_seconds * 1000))
        self.edge_refresh_window = edge_refresh_window_seconds
        self._publish_level = redis.register_script(PUBLISH_LEVEL)
        self.subscription = Subscription(redis_url, {self.levels_channel: self.heard},
                                         on_connected=self._read_watched_again)
        self._levels: dict[int, Level] = {}
        # When each product was first heard sold out (monotonic), while it stays so.
        self._sold_out_since: dict[int, float] = {}
        self._publishing: dict[int, _Publishing] = {}
        self._watched: dict[int, _Watched] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.subscription.start()

    async def close(self) -> None:
        await self.subscription.close()
        for publishing in self._publishing.values():
            if publishing.timer is not None:
                publishing.timer.cancel()
        # Publications under way finish (a withdrawal lost here would last its expiry).
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for watched in self._watched.values():
            watched.feed.discard()
            if watched.boundary is not None:
                watched.boundary.cancel()

    # Publication

    def changed(self, product_id: int, sold_out: bool = False) -> None:
        """The product's live state changed through this process: publish it (coalesced,
        except when units may be coming back to a product last heard sold out, or `sold_out`:
        the change took the last units)."""
        publishing = self._publishing.get(product_id)
        if publishing is None:
            publishing = self._publishing[product_id] = _Publishing()
        if publishing.running:
            publishing.again = True
            publishing.again_at_once = publishing.again_at_once or sold_out
            return
        level = self._levels.get(product_id)
        urgent = sold_out or level is None or level.sold_out() or not level.active
        wait = publishing.last + self.min_interval - time.monotonic()
        if urgent or wait <= 0:
            self._publish_now(product_id)
        elif publishing.timer is None:
            publishing.timer = asyncio.get_running_loop().call_later(
                wait, self._publish_now, product_id)

    def _publish_now(self, product_id: int) -> None:
        publishing = self._publishing.get(product_id)
        if publishing is None:  # heard from another process, never changed here
            publishing = self._publishing[product_id] = _Publishing()
        if publishing.timer is not None:
            publishing.timer.cancel()
            publishing.timer = None
        if publishing.running:
            publishing.again = True
            return
        publishing.running = True
        task = asyncio.create_task(self._publish(product_id, publishing))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, product_id: int, publishing: _Publishing) -> None:
        try:
            await self.publish(product_id)
        except RedisError as error:
            logger.warning("live level not published", extra={"product_id": product_id,
                                                                 "error": repr(error)})
        finally:
            publishing.running = False
            publishing.last = time.monotonic()
            if publishing.again:
                at_once, publishing.again, publishing.again_at_once = \
                    publishing.again_at_once, False, False
                self.changed(product_id, at_once)

    async def publish(self, product_id: int) -> Level | None:
        """Runs PUBLISH_LEVEL now; the level it read (None: Redis has no state of it)."""
        key = str(product_id)
        keys = ProductKeys.of(product_id)
        tag = f"{{p:{product_id}}}"
        reply = await self._publish_level(
            keys=[keys.meta, keys.rebuilding, answer_key(self.prefix, tag, ORDERS_ROUTE, key)],
            args=[self.levels_channel, self.answers_channel, product_id, self.edge_ttl_ms,
                  answer_message(ORDERS_ROUTE, key, SOLD_OUT_ANSWER, ORDER_SHAPE),
                  answer_message(ORDERS_ROUTE, key, None)])
        active, remaining, opens, closes, now, rebuilding = (
            part.decode() if isinstance(part, bytes) else str(part) for part in reply)
        if active == "" or rebuilding == "1":
            return None
        level = Level(product_id, active == "1", int(remaining), int(opens), int(closes),
                      int(now))
        self._learn(level)
        return level

    async def refresh_sold_out_answers(self) -> None:
        """Publishes again every product heard sold out less than `edge_refresh_window` ago, so
        its answer at the edge outlives its short expiry while it stays sold out (and lapses
        when nobody can tell). Past the window (the opening's crowd long gone) the answer
        lapses and order_service answers the stragglers itself: a shop's worth of products
        sold out for good would otherwise be published again and again for ever."""
        now = time.monotonic()
        for product_id, since in list(self._sold_out_since.items()):
            if now - since < self.edge_refresh_window:
                self._publish_now(product_id)

    # Listening

    def heard(self, message: str) -> None:
        try:
            level = Level.parse(message)
        except ValueError:
            logger.warning("live level not understood", extra={"raw": message[:100]})
            return
        self._learn(level)

    def _learn(self, level: Level) -> None:
        known = self._levels.get(level.product_id)
        if known is not None and known.now_ms > level.now_ms:
            return  # an older reading (our own, returned after a newer one was heard)
        if known is None and len(self._levels) >= MAX_LEVELS:
            self._levels.clear()
            self._sold_out_since.clear()
        self._levels[level.product_id] = level
        if level.sold_out():
            self._sold_out_since.setdefault(level.product_id, time.monotonic())
        else:
            self._sold_out_since.pop(level.product_id, None)
        if known is not None and known.same_state(level):
            return  # read again (a refresh, or by two processes): nothing to show
        watched = self._watched.get(level.product_id)
        if watched is not None:
            self._show(watched, level)

    def _show(self, watched: _Watched, level: Level) -> None:
        watched.feed.update(level, final=not level.active)
        self._at_next_boundary(watched, level)

    def _at_next_boundary(self, watched: _Watched, level: Level) -> None:
        if watched.boundary is not None:
            watched.boundary.cancel()
            watched.boundary = None
        ahead = level.next_boundary_in()
        if ahead is not None and level.active:
            # The state flips at the opening and the closing with no change to publish.
            watched.boundary = asyncio.get_running_loop().call_later(
                ahead + 0.001, lambda: self._show(watched, watched.feed.value))

    async def _read_watched_again(self) -> None:
        """After a (re)connection: messages published meanwhile are lost; read what streams
        show again, and forget what nobody streams (it is read when asked for)."""
        for product_id in list(self._levels):
            if product_id not in self._watched:
                del self._levels[product_id]
        for product_id in list(self._watched):
            with contextlib.suppress(RedisError):
                await self.publish(product_id)

    async def current_level(self, product_id: int) -> Level:
        """The level a new stream starts from: as last heard, else read (and published)."""
        level = self._levels.get(product_id)
        if level is None:
            # The route's own errors first (not found, rebuilding), as /stock answers them.
            await self.catalog.public_level(product_id)
            level = await self.publish(product_id)
            if level is None:
                raise StockRebuilding()
        if not level.active:
            raise ProductNotFound()
        return level

    def watch(self, level: Level) -> Feed[Level]:
        watched = self._watched.get(level.product_id)
        if watched is None:
            feed = Feed(level, render_level, min_interval=self.min_interval,
                        heartbeat_seconds=self.heartbeat_seconds)
            watched = self._watched[level.product_id] = _Watched(feed)
            self._at_next_boundary(watched, level)
        watched.listeners += 1
        return watched.feed

    def unwatch(self, product_id: int) -> None:
        watched = self._watched.get(product_id)
        if watched is None:
            return
        watched.listeners -= 1
        if watched.listeners <= 0:
            del self._watched[product_id]
            watched.feed.discard()
            if watched.boundary is not None:
                watched.boundary.cancel()

    def watchers(self, product_id: int) -> int:
        watched = self._watched.get(product_id)
        return watched.listeners if watched else 0


async def refresh_sold_out_answers_periodically(live: LiveStock, *,
                                                interval_seconds: float) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await live.refresh_sold_out_answers()
        except Exception:
            logger.exception("sold-out answers not refreshed")  # the next round tries again


router = APIRouter(prefix="/api/v1/products", tags=["stock"])

ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]


async def get_live_stock(resources: AppResources) -> LiveStock:
    live: Any = getattr(resources, "live_stock", None)
    assert isinstance(live, LiveStock), "the lifespan hands out this service's LiveStock"
    return live


LiveStockDep = Annotated[LiveStock, Depends(get_live_stock)]


@router.get(
    "/{product_id}/live",
    responses={**problem_responses(ProductNotFound, ValidationFailed, StockRebuilding),
               200: {"content": {"text/event-stream": {}},
                     "description": "Server-sent events: the /stock body plus server_time."}},
    response_class=EventStreamResponse,
    # Stated: FastAPI reads the status from the response class's signature otherwise, finds
    # none in EventStreamResponse's, and fails to build the OpenAPI document at all.
    status_code=200,
    description=(
        "The product's stock as server-sent events: the /stock body plus `server_time`, at "
        "once and on every change (at most 10 a second), each with an `id`; a comment line "
        "every 15 s when idle; a final `deleted` event when the product is deleted."
    ),
)
async def live_stock(product_id: ProductId, live: LiveStockDep) -> EventStreamResponse:
    level = await live.current_level(product_id)
    feed = live.watch(level)
    return EventStreamResponse(feed, render_level(feed.value),
                               on_close=lambda: live.unwatch(product_id))
