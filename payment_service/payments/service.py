"""The rules of payments.

A payment first takes the order's payment lease from order_service (only a pending order of
the payer, before its deadline, with no other payment in flight), is recorded `pending`, then
the card processor is asked to charge (over HTTP, with the processor's idempotency key, so an
answer lost on the way is asked for again and never charged twice), then its outcome is
recorded together with an outbox row in one transaction, and order_service is told (now, and by
the outbox worker until it lands):

- succeeded: the order becomes paid and its units are sold. If the order can no longer be paid
  (cancelled meanwhile, or expired after a crash outlived the lease), the charge is voided and
  the payment fails: never a charge without the units, never the units without a charge.
- failed: the order becomes payment_failed and its units come back.

A charge the processor answers `pending` is decided later: by its webhook (signed, retried,
maybe twice or out of order: only a pending payment moves, once), by asking the processor while
the request waits a little, or by the stale-payment loop.

At most one payment of an order is pending or succeeded at once (a unique index, so two
payments of one order at the same moment get one success at most).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment_service.clients import OrdersClient
from payment_service.payments.errors import (
    NoCharge,
    OrderNotPayable,
    OrdersUnavailable,
    PaymentNotFound,
    PaymentPending,
    ProcessorUnavailable,
)
from payment_service.payments.processor import CardProcessor, charge_key
from payment_service.payments.processor_api import Charge, ChargeEvent, payment_of, reference
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
from shared.sale_metrics import OLDEST_PENDING_PAYMENT, PaymentMetrics, Samples

logger = logging.getLogger("payment_service.payments")

# How often a request waiting for a pending charge asks the processor again.
PENDING_POLL_SECONDS = 0.2


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
        # Given back before the payment heard of it (voided ahead by the stale-payment loop):
        # the payment lets go of the order, which stays payable until its deadline.
        return "failed", "interrupted", None
    return None


class PaymentsService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], reads: ReadSession,
                 orders: OrdersClient, processor: CardProcessor, keys: IdempotencyKeys,
                 stale_after: timedelta = timedelta(seconds=60),
                 pending_wait_seconds: float = 2.0, fault_point: str | None = None,
                 metrics: PaymentMetrics | None = None) -> None:
        self.metrics = metrics or PaymentMetrics()
        self.sessions = sessions
        self.reads = PaymentReads(reads)
        self.orders = orders
        self.processor = processor
        self.keys = keys
        self.stale_after = stale_after
        self.pending_wait_seconds = pending_wait_seconds
        self.fault_point = fault_point

    async def pay(self, user_id: int, request: PaymentCreate,
                  idempotency_key: str | None) -> StoredAnswer:
        # The fingerprint of the body as sent: the card number is hashed, never stored.
        return await self.keys.once(
            user_id, idempotency_key, request,
            lambda claim: self._pay(user_id, request, claim),
            made_before=lambda claim: self._first_payment_of(claim, request.order_id))

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
                first = await self._first_payment_of(claim, request.order_id)
                if first is not None:
                    return first
            raise OrderNotPayable("The order is already paid or being paid.") from None

        key = charge_key(payment_id, lease.lease_token)
        try:
            charge = await self.processor.charge(
                key=key, card_number=request.card_number, amount=lease.amount,
                reference=reference(payment_id, request.order_id))
        except ProcessorUnavailable:
            # No answer, however often asked: whether the card was charged is unknown. The
            # payment fails (unless its webhook decided it meanwhile), then the charge is
            # voided ahead: one still on its way is refused, one already taken given back.
            await self._fail_interrupted(payment_id, key)
            return await self._current(payment_id)
        if charge.status == "pending":
            decided = await self._wait_for_decision(payment_id, key)
            if decided is None:
                return await self._current(payment_id)
            charge = decided
        async with self.sessions() as session:
            payment = await PaymentRepository(session).payment(payment_id)
        assert payment is not None
        moved, took = await self._settle_charge(payment, charge)
        if not moved:
            # Decided meanwhile: cut short by the stale-payment loop, whose void this charge
            # must not outlive, or by its webhook, whose outcome order_service may not have
            # heard yet: told again (it is idempotent) so the answer never runs ahead of it.
            current = await self._current(payment_id)
            if current.status == "failed" and charge.status == "succeeded":
                await self._void_owed(payment_id, key)
                return current
            took = await self._deliver_outcome_of(payment_id)
        if charge.status == "succeeded" and took is False:
            raise OrderNotPayable("The order could not be paid any more (it was cancelled or "
                                  "ran out of time); the charge was voided.")
        return await self._current(payment_id)

    async def _deliver_outcome_of(self, payment_id: int) -> bool | None:
        async with self.sessions() as session:
            outcome = await PaymentRepository(session).undelivered_of(payment_id)
        return await self._deliver(outcome) if outcome is not None else None

    async def _wait_for_decision(self, payment_id: int, key: str) -> Charge | None:
        """A pending charge's outcome, asked for while the request may still wait; None if the
        payment was decided meanwhile (by its webhook) or is still undecided."""
        deadline = time.monotonic() + self.pending_wait_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(PENDING_POLL_SECONDS)
            if (await self._current(payment_id)).status != "pending":
                return None
            try:
                charge = await self.processor.charge_state(key)
            except ProcessorUnavailable:
                continue
            if charge is not None and charge.status != "pending":
                return charge
        return None

    async def _settle_charge(self, payment: PaymentRow,
                             charge: Charge) -> tuple[bool, bool | None]:
        """A pending payment takes the processor's decision, with its outbox row, once; then
        order_service is told. (moved, took): moved is False if the payment was no longer
        pending (decided by another path meanwhile, which wrote the outcome if any); took is
        what order_service said (None: not reached, the outbox worker tries again)."""
        moved = transition(charge)
        if moved is None:
            return False, None
        to_status, failure_code, kind = moved
        async with self.sessions() as session, session.begin():
            payments = PaymentRepository(session)
            if not await payments.settle(payment.id, from_status="pending",
                                         to_status=to_status, failure_code=failure_code):
                return False, None
            outcome_id = await payments.add_outcome(payment, kind) if kind else None
        self.metrics.decided(to_status, failure_code)
        if outcome_id is None or kind is None:
            return True, None
        self._maybe_crash("after_outcome")
        took = await self._deliver(Undelivered(outcome_id, payment.id, payment.order_id, kind,
                                               payment.lease_token))
        return True, took

    async def _fail_interrupted(self, payment_id: int, key: str) -> bool:
        """A pending payment whose charge is unknown fails first, owing a void; the void follows
        only if it was still pending (a webhook may have decided it, and a succeeded payment's
        charge must stand)."""
        async with self.sessions() as session, session.begin():
            moved = await PaymentRepository(session).settle(
                payment_id, from_status="pending", to_status="failed",
                failure_code="interrupted", void_owed=True)
        if moved:
            self.metrics.decided("failed", "interrupted")
            await self._void_owed(payment_id, key)
        return moved

    async def _void_owed(self, payment_id: int, key: str) -> None:
        try:
            await self.processor.void(key)
        except ProcessorUnavailable:
            logger.warning("void not confirmed yet; retried later", extra={"payment_id": payment_id})
            return
        async with self.sessions() as session, session.begin():
            await PaymentRepository(session).void_confirmed(payment_id)

    async def _first_payment_of(self, claim: Claim, order_id: int) -> PaymentOut | None:
        async with self.sessions() as session:
            found = await PaymentRepository(session).by_idempotency_key(claim.user_id, claim.key)
        if found is None:
            return None
        payment, first_fingerprint = found
        # A payment from before fingerprints were HMACs has none kept (migration 0004): the
        # order it paid is what can still be compared.
        if first_fingerprint is None:
            if order_id != payment.order_id:
                raise IdempotencyKeyReused()
        elif first_fingerprint != claim.fingerprint:
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
            await self._void(outcome, failure_code="order_not_payable")
        async with self.sessions() as session, session.begin():
            await PaymentRepository(session).delivered(outcome.id)
        return took

    async def _void(self, outcome: Undelivered, *, failure_code: str) -> None:
        """A succeeded payment the order would not take fails first, owing its void; the void
        follows only if it was still succeeded (not refunded meanwhile)."""
        async with self.sessions() as session, session.begin():
            moved = await PaymentRepository(session).settle(
                outcome.payment_id, from_status="succeeded", to_status="failed",
                failure_code=failure_code, void_owed=True)
        if moved:
            self.metrics.decided("failed", failure_code)
            await self._void_owed(outcome.payment_id, key_of(outcome))
            logger.warning("charge voided",
                           extra={"payment_id": outcome.payment_id, "code": failure_code})

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
        """The order's succeeded payment is given back; idempotent. NoCharge only when no
        payment of the order holds a charge or may yet (order_service then counts the refund
        done); PaymentPending while one is being decided (asked again later)."""
        async with self.sessions() as session:
            holding = await PaymentRepository(session).holding_charges(order_id)
        if not holding:
            raise NoCharge()
        for payment in holding:
            if payment.status == "pending":
                raise PaymentPending()
            if payment.status == "succeeded":
                await self.processor.refund(key_of(payment))
                async with self.sessions() as session, session.begin():
                    moved = await PaymentRepository(session).settle(
                        payment.id, from_status="succeeded", to_status="refunded")
                if moved:
                    self.metrics.decided("refunded", None)
        async with self.sessions() as session:
            refunded = [p for p in await PaymentRepository(session).holding_charges(order_id)
                        if p.status == "refunded"]
        if not refunded:
            raise PaymentPending()  # moved meanwhile (voided, say): asked again, then decided
        return PaymentView(id=refunded[-1].id, order_id=order_id, status="refunded",
                           lease_token=refunded[-1].lease_token)

    async def oldest_pending_seconds(self) -> Mapping[str, Samples]:
        """For /metrics at scrape time: how long the oldest pending payment has waited."""
        since = await self.reads.oldest_pending_since()
        age = (utcnow() - since).total_seconds() if since is not None else 0.0
        return {OLDEST_PENDING_PAYMENT: {(): max(age, 0.0)}}

    # The processor's side (webhooks)

    async def take_charge_event(self, event: ChargeEvent) -> None:
        """A processor's webhook: delivered at least once, in any order. Only a pending
        payment moves (once); a charge that succeeded for a payment already failed is voided,
        whatever order the events came in."""
        charge = event.charge
        payment_id = payment_of(charge.reference)
        if payment_id is None:
            return
        async with self.sessions() as session:
            payment = await PaymentRepository(session).payment(payment_id)
        if payment is None or key_of(payment) != charge.idempotency_key:
            return
        if payment.status == "pending":
            await self._settle_charge(payment, charge)
        elif payment.status == "failed" and charge.status == "succeeded":
            await self.processor.void(charge.idempotency_key)

    # Loops

    async def deliver_undelivered(self, *, batch: int = 200) -> int:
        async with self.sessions() as session:
            outcomes = await PaymentRepository(session).undelivered(
                older_than=utcnow() - timedelta(seconds=1), limit=batch)
        for outcome in outcomes:
            await self._deliver(outcome)
        return len(outcomes)

    async def fail_stale_pending(self, *, batch: int = 200) -> int:
        """A payment left pending (its process died mid-charge, or the processor has not
        decided): no charge is kept (void it, in case the processor took it) and it lets go of
        the order, which stays payable until its deadline."""
        async with self.sessions() as session:
            stale = await PaymentRepository(session).stale_pending(
                before=utcnow() - self.stale_after, limit=batch)
        for payment in stale:
            # Failed first: a void is owed only by a payment this loop took from pending. A
            # charge answered meanwhile keeps its payment (never voided under a paid order).
            await self._fail_interrupted(payment.id, key_of(payment))
        return len(stale)

    async def void_owed_charges(self, *, batch: int = 200) -> int:
        """Voids the processor did not confirm when they were due (it did not answer)."""
        async with self.sessions() as session:
            owing = await PaymentRepository(session).owing_voids(limit=batch)
        for payment in owing:
            await self._void_owed(payment.id, key_of(payment))
        return len(owing)
