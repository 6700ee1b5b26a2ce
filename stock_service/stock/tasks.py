"""Background loops of stock, started and stopped by the lifespan; each round is idempotent and
safe with several replicas running."""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.loops import run_periodically
from stock_service.stock.holds import HoldService
from stock_service.stock.rebuild import LiveState

logger = logging.getLogger("stock_service.tasks")


async def reconcile_live_stock_periodically(live: LiveState, *, interval_seconds: float) -> None:
    """Start-up rebuild when Redis has lost its state, then a comparison every interval."""
    await run_periodically(live.reconcile_once, interval_seconds=interval_seconds, logger=logger,
                           what="reconcile round")


async def release_expired_holds_periodically(holds: HoldService, *, interval_seconds: float,
                                             grace: timedelta) -> None:
    """A hold nobody paid for comes back by itself, even if its order is never heard of."""

    async def release_all_expired() -> None:
        while await holds.release_expired(grace=grace) > 0:
            pass

    await run_periodically(release_all_expired, interval_seconds=interval_seconds, logger=logger,
                           what="releasing expired holds")
