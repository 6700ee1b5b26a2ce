"""Background loops of stock, started and stopped by the lifespan; each round is idempotent and
safe with several replicas running."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from stock_service.stock.rebuild import LiveState
from stock_service.stock.service import StockService

logger = logging.getLogger("stock_service.tasks")


async def reconcile_live_stock_periodically(live: LiveState, *, interval_seconds: float) -> None:
    """Start-up rebuild when Redis has lost its state, then a comparison every interval."""
    while True:
        try:
            await live.reconcile_once()
        except Exception:
            # Redis or MySQL away for a moment: the next round tries again.
            logger.exception("reconcile round failed")
        await asyncio.sleep(interval_seconds)


async def release_expired_holds_periodically(stock: StockService, *, interval_seconds: float,
                                             grace: timedelta) -> None:
    """A hold nobody paid for comes back by itself, even if its order is never heard of."""
    while True:
        try:
            while await stock.release_expired(grace=grace) > 0:
                pass
        except Exception:
            logger.exception("releasing expired holds failed")
        await asyncio.sleep(interval_seconds)
