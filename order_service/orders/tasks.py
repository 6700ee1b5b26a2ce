"""Background loops of orders, started and stopped by the lifespan; each round is idempotent and
safe with several replicas running (every transition is a conditional UPDATE, every effect
idempotent at the other end)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from order_service.orders.service import OrdersService

logger = logging.getLogger("order_service.tasks")


async def _every(interval_seconds: float, what: str, round_: Callable[[], Awaitable[int]]) -> None:
    while True:
        try:
            await round_()
        except Exception:
            # A service or the database away for a moment: the next round tries again.
            logger.warning("%s: round failed", what, exc_info=True)
        await asyncio.sleep(interval_seconds)


async def expire_unpaid_orders(orders: OrdersService, *, interval_seconds: float) -> None:
    """On time, whether or not anyone reads the order: its units come back."""
    await _every(interval_seconds, "expire unpaid orders", orders.expire_due)


async def settle_order_effects(orders: OrdersService, *, interval_seconds: float) -> None:
    """Releases, commits and refunds that did not land right after their transition."""
    await _every(interval_seconds, "settle order effects", orders.settle_overdue)


async def release_orphan_holds(orders: OrdersService, *, interval_seconds: float) -> None:
    """Holds no order was ever made for (a crash between the reserve and the insert)."""
    await _every(interval_seconds, "release orphan holds", orders.release_orphan_holds)
