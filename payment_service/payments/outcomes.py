"""What a payment becomes once its charge is decided, and what that owes others.

A pending payment takes the processor's decision once (a conditional update, whoever comes
first: the paying request, the webhook, the stale-payment loop), with an outbox row in the same
transaction; order_service is then told (now, and by the outbox loop until it lands):

- succeeded: the order becomes paid and its units are sold. If the order can no longer be paid
  (cancelled meanwhile, or expired after a crash outlived the lease), the payment fails first
  and its charge is voided: never a charge without the units, never the units without a charge.
- failed: the order becomes payment_failed and its units come back.
- given back before the payment heard of it (voided ahead by the stale-payment loop): the
  payment lets go of the order, which stays payable until its deadline.

A payment whose charge is unknown fails first and owes a void; the void follows only if that
update matched (a charge decided meanwhile keeps its payment), and is retried until confirmed.
"""

from __future__ import annotations

import logging

from payment_service.clients import OrdersClient
from payment_service.payments.errors import OrdersUnavailable, ProcessorUnavailable
from payment_service.payments.processor import CardProcessor, charge_key
from payment_service.payments.processor_api import Charge, ChargeEvent, payment_of
from payment_service.payments.repository import (
    PaymentReads,
    PaymentRepository,
    PaymentRow,
    Undelivered,
)
from payment_service.payments.schemas import PaymentOut
from shared.db import Transactions
from shared.deadline import Deadline
from shared.errors import DatabaseUnavailable
from shared.reads import ReadSession
from shared.sale_metrics import PaymentMetrics

logger = logging.getLogger("payment_service.payments")


def payment_out(payment: PaymentRow) -> PaymentOut:
    return PaymentOut.model_validate(payment, from_attributes=True)


def key_of(payment: PaymentRow | Undelivered) -> str:
    payment_id = payment.id if isinstance(payment, PaymentRow) else payment.payment_id
    return charge_key(payment_id, payment.lease_token)


def transition(charge: Charge) -> tuple[str, str | None, str | None] | None:
    """What a pending payment becomes for a charge in this state: (status, failure_code,
    outbox kind), or None while the processor has not decided."""
    if charge.status == "succeeded":
        return "succeeded", None, "paid"
    if charge.status == "declined":
        return "failed", charge.failure_code or "processor_declined", "failed"
    if charge.status in ("voided", "refunded"):
        return "failed", "interrupted", None
    return None


class PaymentOutcomes:
    def __init__(self, *, transactions: Transactions[PaymentRepository], reads: ReadSession,
                 orders: OrdersClient, processor: CardProcessor,
                 metrics: PaymentMetrics | None = None) -> None:
        self.transactions = transactions
        # A payment's state is read outside a transaction: one round trip, no ROLLBACK.
        self.reads = PaymentReads(reads)
        self.orders = orders
        self.processor = processor
        self.metrics = metrics or PaymentMetrics()

    async def settle_charge(self, payment: PaymentRow, charge: Charge, *,
                            deadline: Deadline | None = None) -> tuple[bool, bool | None]:
        """A pending payment takes the processor's decision, with its outbox row, once; then
        order_service is told. (moved, took): moved is False if the payment was no longer
        pending (decided by another path meanwhile, which wrote the outcome if any); took is
        what order_service said (None: not reached, the outbox loop tries again)."""
        moved = transition(charge)
        if moved is None:
            return False, None
        to_status, failure_code, kind = moved
        async with self.transactions.write() as payments:
            if not await payments.settle(payment.id, from_status="pending",
                                         to_status=to_status, failure_code=failure_code):
                return False, None
            outcome_id = await payments.add_outcome(payment, kind) if kind else None
        self.metrics.decided(to_status, failure_code)
        if outcome_id is None or kind is None:
            return True, None
        took = await self.deliver(Undelivered(outcome_id, payment.id, payment.order_id, kind,
                                              payment.lease_token), deadline=deadline)
        return True, took

    async def fail_interrupted(self, payment_id: int, key: str, *,
                               deadline: Deadline | None = None) -> bool:
        """A pending payment whose charge is unknown fails first, owing a void; the void follows
        only if it was still pending (a webhook may have decided it, and a succeeded payment's
        charge must stand)."""
        async with self.transactions.write() as payments:
            moved = await payments.settle(payment_id, from_status="pending", to_status="failed",
                                          failure_code="interrupted", void_owed=True)
        if moved:
            self.metrics.decided("failed", "interrupted")
            await self.void_owed(payment_id, key, deadline=deadline)
        return moved

    async def void_owed(self, payment_id: int, key: str, *,
                        deadline: Deadline | None = None) -> None:
        try:
            await self.processor.void(key, deadline=deadline)
        except ProcessorUnavailable:
            logger.warning("void not confirmed yet; retried later", extra={"payment_id": payment_id})
            return
        async with self.transactions.write() as payments:
            await payments.void_confirmed(payment_id)

    async def deliver(self, outcome: Undelivered, *, deadline: Deadline | None = None) -> bool | None:
        """Tells order_service; True/False as it took the outcome, None if it could not be
        reached (the outbox loop tries again)."""
        try:
            took = await self.orders.tell(outcome.order_id, outcome.kind,
                                          payment_id=outcome.payment_id,
                                          lease_token=outcome.lease_token, deadline=deadline)
        except OrdersUnavailable:
            async with self.transactions.write() as payments:
                await payments.attempted(outcome.id)
            return None
        if outcome.kind == "paid" and not took:
            await self._void(outcome, failure_code="order_not_payable", deadline=deadline)
        async with self.transactions.write() as payments:
            await payments.delivered(outcome.id)
        return took

    async def deliver_outcome_of(self, payment_id: int, *,
                                 deadline: Deadline | None = None) -> bool | None:
        async with self.transactions.read() as payments:
            outcome = await payments.undelivered_of(payment_id)
        return await self.deliver(outcome, deadline=deadline) if outcome is not None else None

    async def _void(self, outcome: Undelivered, *, failure_code: str,
                    deadline: Deadline | None) -> None:
        """A succeeded payment the order would not take fails first, owing its void; the void
        follows only if it was still succeeded (not refunded meanwhile)."""
        async with self.transactions.write() as payments:
            moved = await payments.settle(outcome.payment_id, from_status="succeeded",
                                          to_status="failed", failure_code=failure_code,
                                          void_owed=True)
        if moved:
            self.metrics.decided("failed", failure_code)
            await self.void_owed(outcome.payment_id, key_of(outcome), deadline=deadline)
            logger.warning("charge voided",
                           extra={"payment_id": outcome.payment_id, "code": failure_code})

    async def current(self, payment_id: int) -> PaymentOut:
        payment = await self.reads.payment(payment_id)
        if payment is None:
            raise DatabaseUnavailable()
        return payment_out(payment)

    # The processor's side (webhooks)

    async def take_charge_event(self, event: ChargeEvent) -> None:
        """A processor's webhook: delivered at least once, in any order. Only a pending
        payment moves (once); a charge that succeeded for a payment already failed is voided,
        whatever order the events came in."""
        charge = event.charge
        payment_id = payment_of(charge.reference)
        if payment_id is None:
            return
        payment = await self.reads.payment(payment_id)
        if payment is None or key_of(payment) != charge.idempotency_key:
            return
        if payment.status == "pending":
            await self.settle_charge(payment, charge)
        elif payment.status == "failed" and charge.status == "succeeded":
            await self.processor.void(charge.idempotency_key)
