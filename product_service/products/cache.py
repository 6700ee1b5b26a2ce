"""Product detail in Redis: cache-aside, one database read per cold product per process, and
never a stale row cached after a change.

    product:{<id>}:detail   "<opens_ms>|<closes_ms>|<the product's JSON without sale_state>",
                            or "-" for "no such product" (kept briefly)
    product:{<id>}:gen      the product's generation: every committed change adds one

The answer's sale_state is computed from the window when the answer is made, never cached, so
a cached product flips to `open` at the exact second.

Single flight: concurrent readers that miss the cache at the same generation share one load
(one read through the ReadSession), so a crowd arriving at a cold product costs one read per
process.

The classic race, a reader that read the row before a change and caches it after the writer's
invalidation, is closed by the generation: a reader notes the generation with its cache miss
(the same round trip), and its load is stored only if the generation is still the one it saw
(one Lua call). A writer, after its commit, bumps the generation and deletes the entry (one Lua
call). A load that read the old row read it before the commit, so the bump comes after the
reader noted the generation: either the store sees the new generation and refuses, or it came
first and the writer's delete removes it. Readers that arrive after the bump start a new
flight, never join one that may have read the old row. A short TTL alone would leave the stale
row visible for the TTL after a change the client was told had succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from product_service.products.repository import ProductsRepository
from product_service.products.schemas import ProductRecord
from shared.reads import ReadSession
from shared.sale_window import epoch_ms, sale_state_at_ms

logger = logging.getLogger("product_service.cache")

MISSING = "-"
# "No such product" is cached only to absorb a burst of reads of an unknown id.
MISSING_TTL_MS = 5_000
# How long a landed load's answer is still shared with the readers of its generation (_landed).
FLIGHT_KEPT_SECONDS = 1.0
# A generation outlives every entry stored under it (entries live detail_cache_seconds).
GENERATION_TTL_MS = 86_400_000

# KEYS: detail gen; ARGV: generation seen ('' for none), value, ttl_ms
STORE = """
local gen = redis.call('GET', KEYS[2]) or ''
if gen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: detail gen; ARGV: generation ttl_ms
INVALIDATE = """
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""


def detail_key(product_id: int) -> str:
    return f"product:{{{product_id}}}:detail"


def generation_key(product_id: int) -> str:
    return f"product:{{{product_id}}}:gen"


def encode(row: dict[str, Any]) -> str:
    record = ProductRecord.model_validate(row)
    return (f"{epoch_ms(row['sale_opens_at'])}|{epoch_ms(row['sale_closes_at'])}|"
            f"{record.model_dump_json()}")


def render(value: str, now_ms: int) -> bytes:
    """The product's JSON body with its sale_state as of `now_ms`."""
    opens, closes, record = value.split("|", 2)
    state = sale_state_at_ms(int(opens), int(closes), now_ms)
    return f'{record[:-1]},"sale_state":"{state}"}}'.encode()


class ProductDetails:
    def __init__(self, redis: Redis, reads: ReadSession, *, ttl_seconds: int) -> None:
        self.redis = redis
        self.products = ProductsRepository(reads=reads)
        self.ttl_ms = ttl_seconds * 1000
        self._store = redis.register_script(STORE)
        self._invalidate = redis.register_script(INVALIDATE)
        self._flights: dict[tuple[int, str | None], asyncio.Task[str]] = {}

    async def body(self, product_id: int) -> bytes | None:
        """The product's JSON answer, or None if there is no such (active) product."""
        try:
            # One round trip for both: the generation is the one this miss is loaded under.
            # (decode_responses: str, never bytes.)
            found = cast(list[str | None], await self.redis.mget(detail_key(product_id),
                                                                 generation_key(product_id)))
        except RedisError:
            # Redis away: MySQL answers (a crowd still shares one read), and nothing is cached,
            # since no generation could be noted.
            logger.warning("product detail cache unavailable", exc_info=True)
            value = await self._load_once(product_id, None)
        else:
            cached, generation = found
            value = cached if cached is not None else await self._load_once(product_id,
                                                                            generation or "")
        if value == MISSING:
            return None
        return render(value, int(time.time() * 1000))

    async def _load_once(self, product_id: int, generation: str | None) -> str:
        flight_key = (product_id, generation)
        flight = self._flights.get(flight_key)
        if flight is None:
            flight = asyncio.create_task(self._load(product_id, generation))
            self._flights[flight_key] = flight
            flight.add_done_callback(lambda done: self._landed(flight_key, done))
        # Shielded: a reader that goes away must not cancel the load the others wait for.
        return await asyncio.shield(flight)

    def _landed(self, flight_key: tuple[int, str | None], flight: asyncio.Task[str]) -> None:
        """A load's answer stays shared a moment after it lands, under the generation it was
        loaded at: a crowd's cache reads sent before it was stored but answered after (each
        reader asks Redis on its own) would otherwise each find the flight gone and read the
        row again. The generation changes with every change, so the answer kept is current for
        anyone who read that generation. A failed load, or one made while Redis was away (no
        generation), is not kept."""
        if flight.cancelled() or flight.exception() is not None or flight_key[1] is None:
            self._flights.pop(flight_key, None)
            return
        asyncio.get_running_loop().call_later(FLIGHT_KEPT_SECONDS, self._flights.pop,
                                              flight_key, None)

    async def _load(self, product_id: int, generation: str | None) -> str:
        """generation None: Redis is away, the row is only answered."""
        row = await self.products.get_active(product_id)
        value = MISSING if row is None else encode(row)
        if generation is not None:
            try:
                await self.store(product_id, generation, value)
            except RedisError:
                logger.warning("product detail not cached", extra={"product_id": product_id},
                               exc_info=True)
        return value

    async def store(self, product_id: int, generation: str, value: str) -> bool:
        """Caches `value` if the product is still at `generation`; False if it has moved on."""
        ttl_ms = MISSING_TTL_MS if value == MISSING else self.ttl_ms
        stored = await self._store(keys=[detail_key(product_id), generation_key(product_id)],
                                   args=[generation, value, ttl_ms])
        return bool(int(stored))

    async def invalidate(self, product_id: int) -> None:
        """After a committed change: the next read loads the row again."""
        try:
            await self._invalidate(keys=[detail_key(product_id), generation_key(product_id)],
                                   args=[GENERATION_TTL_MS])
        except RedisError:
            # The change is committed; the old entry lives at most detail_cache_seconds.
            logger.warning("product detail not invalidated", extra={"product_id": product_id},
                           exc_info=True)


class DetailInvalidations:
    """The products a request changed, invalidated once its transaction has committed and
    before its answer is sent (dependencies.get_detail_invalidations)."""

    def __init__(self, details: ProductDetails) -> None:
        self.details = details
        self.product_ids: set[int] = set()

    def add(self, product_id: int) -> None:
        self.product_ids.add(product_id)

    async def apply(self) -> None:
        for product_id in sorted(self.product_ids):
            await self.details.invalidate(product_id)
        self.product_ids.clear()
