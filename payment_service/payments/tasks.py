"""Background loops of payments, started and stopped by the lifespan; each round is idempotent
and safe with several replicas running (outcomes are idempotent at order_service); what each
round does is payments/recovery.py's."""

from __future__ import annotations

import logging

from payment_service.payments.recovery import PaymentRecovery
from shared.loops import run_periodically

logger = logging.getLogger("payment_service.tasks")


async def deliver_payment_outcomes(recovery: PaymentRecovery, *, interval_seconds: float) -> None:
    """Until order_service has heard every outcome: a succeeded payment always ends paid."""
    await run_periodically(recovery.deliver_undelivered, interval_seconds=interval_seconds,
                           logger=logger, what="delivering payment outcomes", loop="payment_outbox")


async def fail_interrupted_payments(recovery: PaymentRecovery, *, interval_seconds: float) -> None:
    """Payments left pending fail, and the voids they owe reach the processor."""
    async def one_round() -> int:
        return await recovery.fail_stale_pending() + await recovery.void_owed_charges()

    await run_periodically(one_round, interval_seconds=interval_seconds, logger=logger,
                           what="failing interrupted payments", loop="payment_reaper")
