"""Background loops of payments, started and stopped by the lifespan; each round is idempotent
and safe with several replicas running (outcomes are idempotent at order_service)."""

from __future__ import annotations

import logging

from payment_service.payments.service import PaymentsService
from shared.loops import run_periodically

logger = logging.getLogger("payment_service.tasks")


async def deliver_payment_outcomes(payments: PaymentsService, *, interval_seconds: float) -> None:
    """Until order_service has heard every outcome: a succeeded payment always ends paid."""
    await run_periodically(payments.deliver_undelivered, interval_seconds=interval_seconds,
                           logger=logger, what="delivering payment outcomes", loop="payment_outbox")


async def fail_interrupted_payments(payments: PaymentsService, *, interval_seconds: float) -> None:
    """Payments left pending fail, and the voids they owe reach the processor."""
    async def one_round() -> int:
        return await payments.fail_stale_pending() + await payments.void_owed_charges()

    await run_periodically(one_round, interval_seconds=interval_seconds, logger=logger,
                           what="failing interrupted payments", loop="payment_reaper")
