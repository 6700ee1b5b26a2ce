"""stock/rebuild.py against real MariaDB and Redis: a reconcile round or a rebuild that read the
ledger just before a registration change never puts the older values back in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from redis.asyncio import Redis

from shared.clock import utcnow
from shared.db import Transactions
from shared.internal.stock import StockRegistration
from shared.sale_window import epoch_ms
from stock_service.dependencies import Resources
from stock_service.stock.rebuild import LiveState
from stock_service.stock.repository import LedgerRepository
from stock_service.stock.scripts import ProductKeys
from stock_service.tests.factories import make_product, stock_parts

Change = Callable[[], Awaitable[object]]


class ChangedAfterRead(Transactions[LedgerRepository]):
    """The ledger as a reconcile round or a rebuild reads it, with a change committed by someone
    else (once, when armed) the moment a read ends: between the ledger read and Redis."""

    def __init__(self, inner: Transactions[LedgerRepository]) -> None:
        super().__init__(inner.sessions, inner.repositories)
        self.change: Change | None = None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[LedgerRepository]:
        async with super().read() as ledger:
            yield ledger
        change, self.change = self.change, None
        if change is not None:
            await change()


async def live_settings(redis: Redis, product_id: int) -> tuple[int, int]:
    opens, price = await redis.hmget(ProductKeys.of(product_id).meta, "opens", "price")
    return int(opens or 0), int(price or 0)


async def scheduled_product_and_its_postponement(
    resources: Resources
) -> tuple[int, Change, tuple[int, int]]:
    """A product not on sale yet, and a change that postpones its opening and raises its price
    (what Redis must show once that change is made)."""
    stock = stock_parts(resources)
    opens = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    product = await make_product(stock.catalog, total=5, price=10_000, opens_at=opens)
    later = opens + timedelta(hours=1)
    postponed = StockRegistration(seller_id=1, price=20_000, total=5).model_copy(
        update={"sale_opens_at": later})

    async def postpone() -> None:
        await stock.catalog.register(product.product_id, postponed)

    return product.product_id, postpone, (epoch_ms(later), 20_000)


def ledger_of(resources: Resources) -> Transactions[LedgerRepository]:
    return Transactions(resources.datastores.sessionmaker, LedgerRepository)


def reconciler_over(resources: Resources, ledger: ChangedAfterRead) -> LiveState:
    return LiveState(transactions=ledger, redis=resources.datastores.redis,
                     scripts=resources.scripts)


async def test_a_change_committed_after_the_reconcilers_ledger_read_stays(
    resources: Resources, redis: Redis
) -> None:
    product_id, postpone, postponed = await scheduled_product_and_its_postponement(resources)
    ledger = ChangedAfterRead(ledger_of(resources))
    live = reconciler_over(resources, ledger)
    if not await live.epoch_present():
        await live.rebuild_all()  # the round must compare, not rebuild everything
    ledger.change = postpone
    await live.reconcile_once()
    assert await live_settings(redis, product_id) == postponed
    # And the next round, with the change in its ledger read, leaves it as it is.
    await live.reconcile_once()
    assert await live_settings(redis, product_id) == postponed


async def test_a_change_committed_after_a_rebuilds_ledger_read_stays(
    resources: Resources, redis: Redis
) -> None:
    product_id, postpone, postponed = await scheduled_product_and_its_postponement(resources)
    ledger = ChangedAfterRead(ledger_of(resources))
    live = reconciler_over(resources, ledger)
    ledger.change = postpone
    assert await live.rebuild(product_id)
    assert await live_settings(redis, product_id) == postponed


async def test_settings_redis_got_wrong_are_still_put_right_by_a_round(
    resources: Resources, redis: Redis
) -> None:
    product_id, _, _ = await scheduled_product_and_its_postponement(resources)
    before = await live_settings(redis, product_id)
    await redis.hset(ProductKeys.of(product_id).meta, mapping={"price": 1, "opens": 1})
    live = reconciler_over(resources, ChangedAfterRead(ledger_of(resources)))
    if not await live.epoch_present():
        await live.rebuild_all()
    assert product_id in await live.reconcile_once()
    assert await live_settings(redis, product_id) == before
