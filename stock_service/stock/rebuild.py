"""Redis's live state rebuilt from the ledger, exactly, and kept honest.

Redis is the fast gate, MySQL the truth. Whatever happens to Redis (flushed, restarted, failed
over, restored from an older snapshot), the MySQL guard refuses a unit sold twice; this module
makes Redis agree with MySQL again:

- at start-up, and whenever the service epoch key is gone (Redis lost everything), every
  product is rebuilt;
- a product whose state is missing, or whose hold the ledger refused (Redis was wrong), is
  rebuilt at once;
- every `reconcile_interval` the reconciler compares each product's counts and settings in
  Redis with the ledger: more remaining in Redis than in the ledger (the dangerous direction:
  an older snapshot) is rebuilt at once; fewer (a hold Redis took and the ledger never got) is
  rebuilt when it has not moved for two rounds, since a reserve in flight looks the same for
  the milliseconds between its Lua call and its commit.

Settings carry the ledger row's version (stock/models.py StockProduct.version), so a round or a
rebuild that read the row just before a registration change never puts the older settings
back: CONFIGURE leaves out settings older than Redis's, and a rebuild whose row moved while it
loaded loads again.

While a product is rebuilt its reserves answer 503 with Retry-After, never a wrong decision.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.db import Transactions
from shared.sale_window import epoch_ms
from stock_service.stock.repository import LedgerProduct, LedgerRepository
from stock_service.stock.scripts import HoldRecord, ProductKeys, StockScripts

logger = logging.getLogger("stock_service.rebuild")

# Written after every product has been loaded; gone means Redis lost what it had.
EPOCH_KEY = "stock:epoch"
# Reserves wait at most this long for one rebuild; a rebuild that dies lets them in again.
REBUILD_LOCK_MS = 10_000
# Reserves that passed their Lua call just before the rebuild flag went up finish their ledger
# transaction within this, so the rebuild reads them.
IN_FLIGHT_GRACE_SECONDS = 0.05
# The key of the full rebuild among the requested ones (product ids are positive).
_ALL = 0
# A rebuild loads again at most this often when the product's registration moved meanwhile
# (then the reconciler's next round has the last word).
REBUILD_ATTEMPTS = 3
_META_FIELDS = ("total", "remaining", "held", "sold", "opens", "closes", "limit", "price",
                "seller", "active", "version")


def settings_fields(product: LedgerProduct) -> dict[str, int]:
    """What Redis keeps of a product's registration (CONFIGURE and LOAD write these)."""
    return {"total": product.total, "opens": epoch_ms(product.sale_opens_at),
            "closes": epoch_ms(product.sale_closes_at), "limit": product.limit_per_user or 0,
            "price": product.price, "seller": product.seller_id,
            "active": 0 if product.deleted_at else 1, "version": product.version}


@dataclass(frozen=True)
class Comparison:
    """One product, one reconcile round: what the ledger and Redis said."""

    ledger: tuple[int, int, int]  # remaining, held, sold
    redis: tuple[int, int, int]


@dataclass(frozen=True)
class Loaded:
    """One load of a product from the ledger: `done` False if another rebuild held it;
    `version` the settings' version loaded (None: the product is gone, from Redis too)."""

    done: bool
    version: int | None = None


def _nobody_told(product_id: int) -> None:
    pass


class LiveState:
    def __init__(self, *, transactions: Transactions[LedgerRepository],
                 redis: Redis | RedisCluster, scripts: StockScripts,
                 on_change: Callable[[int], None] = _nobody_told) -> None:
        self.transactions = transactions
        self.redis = redis
        self.scripts = scripts
        self._last_round: dict[int, Comparison] = {}
        self._missing_last_round: set[int] = set()
        self._ahead_last_round: dict[int, tuple[int, int]] = {}
        self._requested: dict[int, asyncio.Task[bool]] = {}
        # Told of every product whose live state this changed (admission forgets what it
        # remembered of it: stock/admission.py StockAdmission.changed).
        self.on_change = on_change

    async def rebuild(self, product_id: int) -> bool:
        """Loads the product's state from the ledger; False if another rebuild holds it. A
        registration change that committed after the ledger was read may have reached Redis
        before the load replaced it: the row's version says so, and the product loads again."""
        for _ in range(REBUILD_ATTEMPTS):
            loaded = await self._load_from_ledger(product_id)
            if not loaded.done:
                return False
            if loaded.version is None:
                return True
            async with self.transactions.read() as ledger:
                current = await ledger.product(product_id)
            if current is None or current.version == loaded.version:
                return True
        return True

    async def _load_from_ledger(self, product_id: int) -> Loaded:
        keys = ProductKeys.of(product_id)
        token = os.urandom(8).hex()
        if not await self.redis.set(keys.rebuilding, token, nx=True, px=REBUILD_LOCK_MS):
            return Loaded(done=False)
        try:
            await asyncio.sleep(IN_FLIGHT_GRACE_SECONDS)
            # A shared lock on the product row: the ledger cannot move while it is read.
            async with self.transactions.read() as ledger:
                product = await ledger.product(product_id, shared_lock=True)
                if product is None:
                    await self.redis.delete(*keys.all)
                    self.on_change(product_id)
                    return Loaded(done=True)
                holds = await ledger.live_holds(product_id)
                users = await ledger.user_units(product_id)
            meta = {**settings_fields(product), "remaining": product.remaining,
                    "held": product.held, "sold": product.sold}
            records = {hold.order_id: HoldRecord(
                hold.state, hold.user_id, hold.quantity, epoch_ms(hold.created_at))
                for hold in holds}
            loaded = await self.scripts.load(product_id, token, meta, users, records)
            self.on_change(product_id)
        except BaseException:
            # The flag is ours: let reserves in again rather than make them wait it out.
            if await self.redis.get(keys.rebuilding) == token:
                await self.redis.delete(keys.rebuilding)
            raise
        if loaded:
            logger.info("rebuilt live stock from the ledger",
                        extra={"product_id": product_id, "remaining": product.remaining,
                               "holds": len(records)})
            return Loaded(done=True, version=product.version)
        return Loaded(done=False)

    async def rebuild_or_wait(self, product_id: int, *, timeout: float = 2.0) -> None:
        """Rebuilds, or waits for the rebuild another caller is running (bounded)."""
        if await self.rebuild(product_id):
            return
        flag = ProductKeys.of(product_id).rebuilding
        # Polled: the other rebuild may run in another replica, so there is nothing to await.
        for _ in range(int(timeout / 0.01)):
            if not await self.redis.exists(flag):
                return
            await asyncio.sleep(0.01)

    def request_rebuild(self, product_id: int) -> None:
        """Rebuild soon, in the background (one at a time per product): Redis was found wrong
        on the way to an answer that must not wait for it."""
        running = self._requested.get(product_id)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._rebuild_logged(product_id))
        self._requested[product_id] = task
        task.add_done_callback(lambda _: self._requested.pop(product_id, None))

    def request_full_rebuild(self) -> None:
        """Redis lost everything (the epoch is gone): every product, in the background, once."""
        running = self._requested.get(_ALL)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._rebuild_all_logged())
        self._requested[_ALL] = task
        task.add_done_callback(lambda _: self._requested.pop(_ALL, None))

    async def _rebuild_all_logged(self) -> bool:
        try:
            return await self.rebuild_all() == 0
        except Exception:
            logger.exception("full rebuild failed")
            return False

    async def _rebuild_logged(self, product_id: int) -> bool:
        try:
            return await self.rebuild(product_id)
        except Exception:
            logger.exception("rebuild failed", extra={"product_id": product_id})
            return False

    async def drain(self) -> None:
        while self._requested:
            await asyncio.gather(*list(self._requested.values()), return_exceptions=True)

    async def epoch_present(self) -> bool:
        return bool(await self.redis.exists(EPOCH_KEY))

    async def rebuild_all(self) -> int:
        """Every product, then the epoch; returns how many could not be rebuilt (held by
        another rebuild, which finishes them)."""
        async with self.transactions.read() as ledger:
            product_ids = await ledger.all_product_ids()
        results = await asyncio.gather(*(self.rebuild(pid) for pid in product_ids))
        busy = results.count(False)
        if not busy:
            await self.redis.set(EPOCH_KEY, os.urandom(8).hex())
        logger.info("live stock rebuilt from the ledger",
                    extra={"products": len(product_ids), "busy": busy})
        return busy

    async def reconcile_once(self) -> list[int]:
        """One round of comparison; returns the products it rebuilt or reconfigured."""
        if not await self.epoch_present():
            await self.rebuild_all()
            return []
        async with self.transactions.read() as ledger:
            products = await ledger.all_products()
        if not products:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for product in products:
                pipe.hmget(ProductKeys.of(product.product_id).meta, *_META_FIELDS)
            replies: list[Any] = await pipe.execute()
        fixed: list[int] = []
        seen: dict[int, Comparison] = {}
        missing: set[int] = set()
        ahead: dict[int, tuple[int, int]] = {}
        for product, reply in zip(products, replies, strict=True):
            if reply[0] is None:
                # Missing in two rounds in a row: one round can fall between a registration's
                # ledger commit and its configure of Redis. A reserve meanwhile rebuilds on
                # demand (_state_missing), so waiting a round delays nothing a buyer needs.
                if product.product_id not in self._missing_last_round:
                    missing.add(product.product_id)
                elif await self.rebuild(product.product_id):
                    fixed.append(product.product_id)
                continue
            live = dict(zip(_META_FIELDS, (int(value or 0) for value in reply), strict=True))
            if live["version"] > product.version:
                # A registration change committed after this round's ledger read has reached
                # Redis already: this round's values are the older ones. Redis ahead of the
                # ledger for two rounds (a ledger restored from an older backup) is rebuilt.
                versions = (product.version, live["version"])
                if self._ahead_last_round.get(product.product_id) != versions:
                    ahead[product.product_id] = versions
                elif await self.rebuild(product.product_id):
                    fixed.append(product.product_id)
                continue
            wanted = settings_fields(product)
            if any(live[name] != value for name, value in wanted.items()):
                await self.scripts.configure(product.product_id, wanted)
                self.on_change(product.product_id)
                fixed.append(product.product_id)
                continue
            comparison = Comparison((product.remaining, product.held, product.sold),
                                    (live["remaining"], live["held"], live["sold"]))
            if comparison.redis == comparison.ledger:
                continue
            if (self._last_round.get(product.product_id) == comparison
                    or (live["remaining"] > product.remaining
                        and await self._still_ahead(product.product_id))):
                logger.warning("live stock disagrees with the ledger; rebuilding",
                               extra={"product_id": product.product_id,
                                      "ledger": comparison.ledger, "redis": comparison.redis})
                if await self.rebuild(product.product_id):
                    fixed.append(product.product_id)
                continue
            seen[product.product_id] = comparison
        self._last_round = seen
        self._missing_last_round = missing
        self._ahead_last_round = ahead
        return fixed

    async def _still_ahead(self, product_id: int) -> bool:
        """Redis, the ledger, Redis again: a reserve lands in Redis first and a release in the
        ledger first, so one pair of reads can show Redis ahead for a moment with nothing wrong;
        Redis ahead of the ledger on both sides of one ledger read cannot be a move in flight."""
        meta = ProductKeys.of(product_id).meta
        before = await self.redis.hget(meta, "remaining")
        async with self.transactions.read() as ledger:
            product = await ledger.product(product_id)
        after = await self.redis.hget(meta, "remaining")
        if product is None or before is None or after is None:
            return False
        return min(int(before), int(after)) > product.remaining
