"""The rules of payments.

A payment first takes the order's payment lease from order_service (only a pending order of
the payer, before its deadline, with no other payment in flight), is recorded `pending`, then
the processor is called, then its outcome is recorded together with an outbox row in one
transaction, and order_service is told (now, and by the outbox worker until it lands):

- succeeded: the order becomes paid and its units are sold. If the order can no longer be paid
  (cancelled meanwhile, or expired after a crash outlived the lease), the charge is voided and
  the payment fails: never a charge without the units, never the units without a charge.
- failed: the order becomes payment_failed and its units come back.

At most one payment of an order is pending or succeeded at once (a unique index, so two
payments of one order at the same moment get one success at most).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_service.clients import OrdersClient
from payment_service.payments.errors import (
    OrderNotPayable,
    OrdersUnavailable,
    PaymentNotFound,
)
from payment_service.payments.processor import CardProcessor
from payment_service.payments.repository import (
    DUPLICATE_ENTRY,
    PaymentReads,
    PaymentRepository,
    PaymentRow,
    Undelivered,
)
from payment_service.payments.schemas import PaymentCreate, PaymentOut
from shared.clock import utcnow
from shared.errors import DatabaseUnavailable
from shared.idempotency import (
    Claim,
    IdempotencyKeyReused,
    IdempotencyKeys,
    StoredAnswer,
)
from shared.internal.payments import PaymentView
from shared.reads import ReadSession

logger = logging.getLogger("payment_service.payments")

# A payment still pending after this was cut short (its process died mid-charge).
STALE_AFTER = timedelta(seconds=60)


def payment_out(payment: PaymentRow) -> PaymentOut:
    return PaymentOut.model_validate(payment, from_attributes=True)


def reference(payment_id: int) -> str:
    return f"payment-{payment_id}"


class PaymentsService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], reads: ReadSession,
                 orders: OrdersClient, processor: CardProcessor, keys: IdempotencyKeys,
                 fault_point: str | None = None) -> None:
        self.sessions = sessions
        self.reads = PaymentReads(reads)
        self.orders = orders
        self.processor = processor
        self.keys = keys
        self.fault_point = fault_point

    async def pay(self, user_id: int, request: PaymentCreate,
                  idempotency_key: str | None) -> StoredAnswer:
        # The fingerprint of the body as sent: the card number is hashed, never stored.
        return await self.keys.once(
            user_id, idempotency_key, request,
            lambda claim: self._pay(user_id, request, claim))

    async def _pay(self, user_id: int, request: PaymentCreate, claim: Claim | None) -> PaymentOut:
        lease = await self.orders.lease(request.order_id, user_id)
        try:
            async with self.sessions() as session, session.begin():
                payments = PaymentRepository(session)
                payment_id = await payments.insert_pending(
                    order_id=request.order_id, user_id=user_id, amount=lease.amount,
                    card_last4=request.card_number[-4:], lease_token=lease.lease_token,
                    idempotency_key=claim.key if claim else None,
                    idempotency_fingerprint=claim.fingerprint if claim else None)
        except IntegrityError as error:
            if getattr(error.orig, "args", (None,))[0] != DUPLICATE_ENTRY:
                raise
            if claim is not None:
                first = await self._first_payment_of(claim)
                if first is not None:
                    return first
            raise OrderNotPayable("The order is already paid or being paid.") from None

        charge = await self.processor.charge(card_number=request.card_number,
                                             amount=lease.amount,
                                             reference=reference(payment_id))
        kind = "paid" if charge.succeeded else "failed"
        async with self.sessions() as session, session.begin():
            payments = PaymentRepository(session)
            await payments.settle(payment_id, from_status="pending",
                                  to_status="succeeded" if charge.succeeded else "failed",
                                  failure_code=charge.failure_code)
            payment = await payments.payment(payment_id)
            assert payment is not None
            outcome_id = await payments.add_outcome(payment, kind)
        self._maybe_crash("after_outcome")
        took = await self._deliver(Undelivered(outcome_id, payment_id, payment.order_id, kind,
                                               payment.lease_token))
        if kind == "paid" and took is False:
            raise OrderNotPayable("The order could not be paid any more (it was cancelled or "
                                  "ran out of time); the charge was voided.")
        return await self._current(payment_id)

    async def _first_payment_of(self, claim: Claim) -> PaymentOut | None:
        async with self.sessions() as session:
            found = await PaymentRepository(session).by_idempotency_key(claim.user_id, claim.key)
        if found is None:
            return None
        payment, first_fingerprint = found
        if first_fingerprint != claim.fingerprint:
            raise IdempotencyKeyReused()
        return payment_out(payment)

    async def _deliver(self, outcome: Undelivered) -> bool | None:
        """Tells order_service; True/False as it took the outcome, None if it could not be
        reached (the outbox worker tries again)."""
        try:
            took = await self.orders.tell(outcome.order_id, outcome.kind,
                                          payment_id=outcome.payment_id,
                                          lease_token=outcome.lease_token)
        except OrdersUnavailable:
            async with self.sessions() as session, session.begin():
                await PaymentRepository(session).attempted(outcome.id)
            return None
        if outcome.kind == "paid" and not took:
            await self._void(outcome.payment_id, failure_code="order_not_payable")
        async with self.sessions() as session, session.begin():
            await PaymentRepository(session).delivered(outcome.id)
        return took

    async def _void(self, payment_id: int, *, failure_code: str) -> None:
        await self.processor.void(reference=reference(payment_id))
        async with self.sessions() as session, session.begin():
            await PaymentRepository(session).settle(payment_id, from_status="succeeded",
                                                    to_status="failed", failure_code=failure_code)
        logger.warning("charge voided", extra={"payment_id": payment_id, "code": failure_code})

    async def _current(self, payment_id: int) -> PaymentOut:
        async with self.sessions() as session:
            payment = await PaymentRepository(session).payment(payment_id)
        if payment is None:
            raise DatabaseUnavailable()
        return payment_out(payment)

    def _maybe_crash(self, point: str) -> None:
        """Test-only fault injection (settings refuse it outside the test environment)."""
        if self.fault_point == point:
            logger.error("fault injected: exiting", extra={"point": point})
            os._exit(17)

    # Reading

    async def get(self, user_id: int, payment_id: int) -> PaymentOut:
        payment = await self.reads.payment(payment_id)
        if payment is None or payment.user_id != user_id:
            raise PaymentNotFound()
        return payment_out(payment)

    # order_service's side (internal API)

    async def latest_for_order(self, order_id: int) -> PaymentView:
        payment = await self.reads.latest_of_order(order_id)
        if payment is None:
            raise PaymentNotFound()
        return PaymentView(id=payment.id, order_id=order_id, status=payment.status,
                           lease_token=payment.lease_token)

    async def refund(self, order_id: int) -> PaymentView:
        """The order's succeeded payment is given back; idempotent."""
        async with self.sessions() as session, session.begin():
            payments = PaymentRepository(session)
            paid = await payments.succeeded_of_order(order_id)
            if paid is not None:
                await self.processor.void(reference=reference(paid.id))
                await payments.settle(paid.id, from_status="succeeded", to_status="refunded")
        latest = await self.reads.latest_of_order(order_id)
        if latest is None or latest.status != "refunded":
            raise PaymentNotFound("The order has no payment to refund.")
        return PaymentView(id=latest.id, order_id=order_id, status=latest.status,
                           lease_token=latest.lease_token)

    # Loops

    async def deliver_undelivered(self, *, batch: int = 200) -> int:
        async with self.sessions() as session:
            outcomes = await PaymentRepository(session).undelivered(
                older_than=utcnow() - timedelta(seconds=1), limit=batch)
        for outcome in outcomes:
            await self._deliver(outcome)
        return len(outcomes)

    async def fail_stale_pending(self, *, batch: int = 200) -> int:
        """A payment left pending by a process that died mid-charge: no charge is kept (void it,
        in case the processor took it) and it lets go of the order, which stays payable until
        its deadline."""
        async with self.sessions() as session:
            stale = await PaymentRepository(session).stale_pending(
                before=utcnow() - STALE_AFTER, limit=batch)
        for payment_id in stale:
            await self.processor.void(reference=reference(payment_id))
            async with self.sessions() as session, session.begin():
                await PaymentRepository(session).settle(payment_id, from_status="pending",
                                                        to_status="failed",
                                                        failure_code="interrupted")
        return len(stale)
