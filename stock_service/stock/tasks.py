"""Background loops of stock, started and stopped by the lifespan; each round is idempotent and
safe with several replicas running."""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.loops import run_periodically
from shared.sale_metrics import StockMetrics
from stock_service.stock.holds import HoldService
from stock_service.stock.rebuild import LiveState

logger = logging.getLogger("stock_service.tasks")


async def reconcile_live_stock_periodically(live: LiveState, *, interval_seconds: float,
                                            metrics: StockMetrics | None = None) -> None:
    """Start-up rebuild when Redis has lost its state, then a comparison every interval; the
    products it had to repair are counted."""

    async def reconcile_round() -> None:
        repaired = await live.reconcile_once()
        if metrics is not None and repaired:
            metrics.reconcile_repairs.inc(len(repaired))

    await run_periodically(reconcile_round, interval_seconds=interval_seconds, logger=logger,
                           what="reconcile round", loop="stock_reconcile")


async def release_expired_holds_periodically(holds: HoldService, *, interval_seconds: float,
                                             grace: timedelta) -> None:
    """A hold nobody paid for comes back by itself, even if its order is never heard of."""

    async def release_all_expired() -> None:
        while await holds.release_expired(grace=grace) > 0:
            pass

    await run_periodically(release_all_expired, interval_seconds=interval_seconds, logger=logger,
                           what="releasing expired holds", loop="expired_holds")
