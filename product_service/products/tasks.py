"""Background loops of products, started and stopped by the lifespan; each round is idempotent
and safe with several replicas running (rows another replica holds are skipped)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from product_service.clients import StockClient
from product_service.products.repository import ProductsRepository
from shared.clock import utcnow
from shared.db import Transactions
from shared.loops import run_periodically

logger = logging.getLogger("product_service.tasks")


async def settle_pending_products(sessions: async_sessionmaker[AsyncSession],
                                  stock: StockClient, *, older_than: timedelta) -> int:
    """Products left pending for longer than `older_than` lost their creating request: each is
    withdrawn from stock_service, then its row deleted, one per transaction. The row stays
    locked meanwhile, so the request (if it is somehow still running) cannot activate it
    under the settler. Returns how many were settled; stops at the first that stock_service
    could not take (the next round tries again)."""
    settled = 0
    transactions = Transactions(sessions, lambda session: ProductsRepository(session=session))
    while True:
        async with transactions.write() as products:
            product_id = await products.lock_one_stale_pending(
                written_before=utcnow() - older_than)
            if product_id is None:
                return settled
            # Withdrawn first: a row deleted while stock_service kept a live entry would leave
            # that entry for nobody to find.
            await stock.unregister(product_id)
            await products.delete_pending(product_id)
        logger.info("pending product settled: withdrawn and deleted",
                    extra={"product_id": product_id})
        settled += 1


async def settle_pending_products_periodically(
    sessions: async_sessionmaker[AsyncSession], stock: StockClient, *, older_than: timedelta,
    interval_seconds: float,
) -> None:
    async def settle_round() -> None:
        await settle_pending_products(sessions, stock, older_than=older_than)

    # Waits first: at start-up nothing is older than it was a moment ago, and a replica's
    # restart should not race the requests its peers are finishing.
    await run_periodically(settle_round, interval_seconds=interval_seconds, logger=logger,
                           what="settling pending products", wait_first=True)
