"""The rounds of payments' background loops (payments/tasks.py runs them): what a request could
not finish is finished here, each round idempotent and safe with several replicas running.

- outcomes order_service has not heard yet are told again (a succeeded payment always ends with
  its order paid, or its charge voided);
- a payment left pending (its process died mid-charge, or the processor never decided) fails
  and its charge is voided ahead;
- voids the processor did not confirm when they were due are sent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from payment_service.payments.outcomes import PaymentOutcomes, key_of
from payment_service.payments.repository import PaymentReads, PaymentRepository
from shared.clock import utcnow
from shared.db import Transactions
from shared.reads import ReadSession
from shared.sale_metrics import OLDEST_PENDING_PAYMENT, Samples


class PaymentRecovery:
    def __init__(self, *, transactions: Transactions[PaymentRepository], reads: ReadSession,
                 outcomes: PaymentOutcomes, stale_after: timedelta = timedelta(seconds=60)) -> None:
        self.transactions = transactions
        self.reads = PaymentReads(reads)
        self.outcomes = outcomes
        self.stale_after = stale_after

    async def oldest_pending_seconds(self) -> Mapping[str, Samples]:
        """For /metrics at scrape time: how long the oldest pending payment has waited."""
        since = await self.reads.oldest_pending_since()
        age = (utcnow() - since).total_seconds() if since is not None else 0.0
        return {OLDEST_PENDING_PAYMENT: {(): max(age, 0.0)}}

    async def deliver_undelivered(self, *, batch: int = 200) -> int:
        async with self.transactions.read() as payments:
            undelivered = await payments.undelivered(
                older_than=utcnow() - timedelta(seconds=1), limit=batch)
        for outcome in undelivered:
            await self.outcomes.deliver(outcome)
        return len(undelivered)

    async def fail_stale_pending(self, *, batch: int = 200) -> int:
        """No charge is kept for a payment left pending (void it, in case the processor took
        it), and it lets go of the order, which stays payable until its deadline."""
        async with self.transactions.read() as payments:
            stale = await payments.stale_pending(before=utcnow() - self.stale_after, limit=batch)
        for payment in stale:
            # Failed first: a void is owed only by a payment this loop took from pending. A
            # charge answered meanwhile keeps its payment (never voided under a paid order).
            await self.outcomes.fail_interrupted(payment.id, key_of(payment))
        return len(stale)

    async def void_owed_charges(self, *, batch: int = 200) -> int:
        async with self.transactions.read() as payments:
            owing = await payments.owing_voids(limit=batch)
        for payment in owing:
            await self.outcomes.void_owed(payment.id, key_of(payment))
        return len(owing)
