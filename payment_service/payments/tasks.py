"""Background loops of payments, started and stopped by the lifespan; each round is idempotent
and safe with several replicas running (outcomes are idempotent at order_service)."""

from __future__ import annotations

import asyncio
import logging

from payment_service.payments.service import PaymentsService

logger = logging.getLogger("payment_service.tasks")


async def deliver_payment_outcomes(payments: PaymentsService, *, interval_seconds: float) -> None:
    """Until order_service has heard every outcome: a succeeded payment always ends paid."""
    while True:
        try:
            await payments.deliver_undelivered()
        except Exception:
            logger.warning("delivering payment outcomes failed; next round", exc_info=True)
        await asyncio.sleep(interval_seconds)


async def fail_interrupted_payments(payments: PaymentsService, *, interval_seconds: float) -> None:
    while True:
        try:
            await payments.fail_stale_pending()
        except Exception:
            logger.warning("failing interrupted payments failed; next round", exc_info=True)
        await asyncio.sleep(interval_seconds)
