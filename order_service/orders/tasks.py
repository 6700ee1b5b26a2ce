"""Background loops of orders, started and stopped by the lifespan; each round is idempotent and
safe with several replicas running (every transition is a conditional UPDATE, every effect
idempotent at the other end)."""

from __future__ import annotations

import logging

from order_service.orders.drain import LineDrain
from order_service.orders.effects import OrderEffects
from order_service.orders.expiry import OrderExpiry
from shared.loops import run_periodically

logger = logging.getLogger("order_service.tasks")


async def expire_unpaid_orders(expiry: OrderExpiry, *, interval_seconds: float) -> None:
    """On time, whether or not anyone reads the order: its units come back."""
    await run_periodically(expiry.expire_due, interval_seconds=interval_seconds, logger=logger,
                           what="expiring unpaid orders", loop="order_expiry")


async def settle_order_effects(effects: OrderEffects, *, interval_seconds: float) -> None:
    """Releases, commits and refunds that did not land right after their transition."""
    await run_periodically(effects.settle_overdue, interval_seconds=interval_seconds,
                           logger=logger, what="settling order effects", loop="order_effects")


async def release_orphan_holds(effects: OrderEffects, *, interval_seconds: float) -> None:
    """Holds no order was ever made for (a crash between the reserve and the insert)."""
    await run_periodically(effects.release_orphan_holds, interval_seconds=interval_seconds,
                           logger=logger, what="releasing orphan holds", loop="orphan_holds")


async def sweep_lines(drain: LineDrain, *, interval_seconds: float) -> None:
    """Every product with a line is drained here too: places admitted by a replica that died
    are admitted again once their lease runs out."""
    await run_periodically(drain.sweep, interval_seconds=interval_seconds, logger=logger,
                           what="sweeping the lines", loop="line_sweep")
