"""The background loops of stock/tasks.py stop when the lifespan cancels them, whatever their
round is doing. On Python 3.11, asyncio.wait_for (under asyncmy's connect) can hand back the
inner outcome instead of CancelledError when a cancellation meets a refused connection
(CPython gh-86296): the round then fails with an ordinary OperationalError, and a loop that
only logs it and sleeps its interval hangs the app's shutdown (seen: stock_service's frame
test against an unreachable database, now and then)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shared.db import Transactions, create_engine, create_sessionmaker
from stock_service.stock.rebuild import LiveState
from stock_service.stock.repository import LedgerRepository
from stock_service.stock.scripts import StockScripts
from stock_service.stock.tasks import reconcile_live_stock_periodically


class CancellationTurnedIntoAnError(LiveState):
    """A round whose cancellation comes out as a connection error, as asyncmy's does when the
    race above is lost (which a test cannot make happen on purpose)."""

    async def reconcile_once(self) -> list[int]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionRefusedError("Connect call failed") from None
        return []


async def test_the_reconciler_stops_when_its_round_turns_the_cancellation_into_an_error(
    redis: Redis
) -> None:
    engine = create_engine("mysql+asyncmy://root@127.0.0.1:9/preorder_stock")
    try:
        live = CancellationTurnedIntoAnError(
            transactions=Transactions(create_sessionmaker(engine), LedgerRepository), redis=redis,
                                             scripts=StockScripts(redis))
        task = asyncio.create_task(reconcile_live_stock_periodically(live, interval_seconds=3600))
        await asyncio.sleep(0.05)  # inside its first round
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "the loop slept through its cancellation"
        assert task.cancelled()
    finally:
        await engine.dispose()
