"""Paying an order (POST /api/v1/payments), within the payment's time budget.

A payment first takes the order's payment lease from order_service (only a pending order of
the payer, before its deadline, with no other payment in flight), is recorded `pending`, then
the card processor is asked to charge (over HTTP, with the processor's idempotency key, so an
answer lost on the way is asked for again and never charged twice), and the outcome is settled
by payments/outcomes.py.

The answer is `succeeded` or `failed`, as the contract says, within `budget_seconds` (below the
gateway's upstream timeout): every wait takes what is left of it. A charge the processor leaves
`pending` is waited for (its webhook, or asking the processor) until `FINISH_SECONDS` before the
end; one still undecided then, or one whose answer never came, fails `interrupted` and its
charge is voided ahead (a late success is refused or given back), so the order stays payable
and nothing is charged. Past the budget (a stalled database, say) the request is answered 503
while the payment goes on to its end, and a retry with the same key gets that end.

At most one payment of an order is pending or succeeded at once (a unique index, so two
payments of one order at the same moment get one success at most).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy.exc import IntegrityError

from payment_service.clients import OrdersClient
from payment_service.payments.errors import OrderNotPayable, PaymentNotFound, ProcessorUnavailable
from payment_service.payments.outcomes import PaymentOutcomes, payment_out, transition
from payment_service.payments.processor import CardProcessor, charge_key
from payment_service.payments.processor_api import Charge, reference
from payment_service.payments.repository import PaymentReads, PaymentRepository
from payment_service.payments.schemas import PaymentCreate, PaymentOut
from shared.db import Transactions
from shared.deadline import Deadline
from shared.idempotency import Claim, IdempotencyKeyReused, IdempotencyKeys, StoredAnswer
from shared.reads import ReadSession
from shared.repository import is_duplicate_entry

# How often a request waiting for a pending charge asks the processor again.
PENDING_POLL_SECONDS = 0.2
# Of the budget, kept for what follows the charge: the outcome's transaction, telling
# order_service, or the void of a charge given up on.
FINISH_SECONDS = 2.0


class PaymentCharging:
    def __init__(self, *, transactions: Transactions[PaymentRepository], reads: ReadSession,
                 orders: OrdersClient, processor: CardProcessor, keys: IdempotencyKeys,
                 outcomes: PaymentOutcomes, budget_seconds: float | None = None) -> None:
        self.transactions = transactions
        self.reads = PaymentReads(reads)
        self.orders = orders
        self.processor = processor
        self.keys = keys
        self.outcomes = outcomes
        self.budget_seconds = budget_seconds

    async def pay(self, user_id: int, request: PaymentCreate,
                  idempotency_key: str | None) -> StoredAnswer:
        # The fingerprint of the body as sent (an HMAC: the card number is never kept).
        budget = self.budget_seconds
        deadline = Deadline.after(budget) if budget is not None else None
        return await self.keys.once(
            user_id, idempotency_key, request,
            lambda claim: self._pay(user_id, request, claim, deadline),
            made_before=lambda claim: self._first_payment_of(claim, request.order_id),
            answer_within=budget)

    async def get(self, user_id: int, payment_id: int) -> PaymentOut:
        payment = await self.reads.payment(payment_id)
        if payment is None or payment.user_id != user_id:
            raise PaymentNotFound()
        return payment_out(payment)

    async def _pay(self, user_id: int, request: PaymentCreate, claim: Claim | None,
                   deadline: Deadline | None) -> PaymentOut:
        charging = deadline.earlier_by(FINISH_SECONDS) if deadline else None
        lease = await self.orders.lease(request.order_id, user_id, deadline=charging)
        try:
            async with self.transactions.write() as payments:
                payment = await payments.insert_pending(
                    order_id=request.order_id, user_id=user_id, amount=lease.amount,
                    card_last4=request.card_number[-4:], lease_token=lease.lease_token,
                    idempotency_key=claim.key if claim else None,
                    idempotency_fingerprint=claim.fingerprint if claim else None)
        except IntegrityError as error:
            if not is_duplicate_entry(error):
                raise
            if claim is not None:
                first = await self._first_payment_of(claim, request.order_id)
                if first is not None:
                    return first
            raise OrderNotPayable("The order is already paid or being paid.") from None

        payment_id = payment.id
        key = charge_key(payment_id, lease.lease_token)
        try:
            charge = await self.processor.charge(
                key=key, card_number=request.card_number, amount=lease.amount,
                reference=reference(payment_id, request.order_id), deadline=charging)
        except ProcessorUnavailable:
            # No answer, however often asked: whether the card was charged is unknown. The
            # payment fails (unless its webhook decided it meanwhile), then the charge is
            # voided ahead: one still on its way is refused, one already taken given back.
            await self.outcomes.fail_interrupted(payment_id, key, deadline=deadline)
            return await self.outcomes.current(payment_id)
        if charge.status == "pending":
            decided = await self._wait_for_decision(payment_id, key, charging)
            if decided is None:
                # Still undecided when the budget's charging time is up (or decided by its
                # webhook meanwhile): the answer is the contract's succeeded or failed, never
                # pending. Given up on, it fails `interrupted` and its charge is voided ahead.
                if (await self.outcomes.current(payment_id)).status == "pending":
                    await self.outcomes.fail_interrupted(payment_id, key, deadline=deadline)
                return await self._told(payment_id, deadline)
            charge = decided
        # The row as inserted is all settling needs: its move is conditional on `pending` in
        # the database, whatever a webhook did meanwhile.
        moved, took = await self.outcomes.settle_charge(payment, charge, deadline=deadline)
        if not moved:
            # Decided meanwhile: cut short by the stale-payment loop, whose void this charge
            # must not outlive, or by its webhook, whose outcome order_service may not have
            # heard yet: told again (it is idempotent) so the answer never runs ahead of it.
            current = await self.outcomes.current(payment_id)
            if current.status == "failed" and charge.status == "succeeded":
                await self.outcomes.void_owed(payment_id, key, deadline=deadline)
                return current
            took = await self.outcomes.deliver_outcome_of(payment_id, deadline=deadline)
        if charge.status == "succeeded" and took is False:
            raise OrderNotPayable("The order could not be paid any more (it was cancelled or "
                                  "ran out of time); the charge was voided.")
        written = transition(charge) if moved else None
        if written is not None:
            # What this request wrote is its answer, with no read back. Only a refund moves a
            # decided payment on (the buyer's cancel of the paid order, or order_service
            # finding its units gone), and one finished before this answer leaves would have
            # raced a read back too.
            status, failure_code, _ = written
            return payment_out(replace(payment, status=status, failure_code=failure_code))
        return await self.outcomes.current(payment_id)

    async def _told(self, payment_id: int, deadline: Deadline | None) -> PaymentOut:
        """The payment as decided by another path (its webhook), once order_service has heard
        its outcome (told again: it is idempotent)."""
        await self.outcomes.deliver_outcome_of(payment_id, deadline=deadline)
        return await self.outcomes.current(payment_id)

    async def _wait_for_decision(self, payment_id: int, key: str,
                                 until: Deadline | None) -> Charge | None:
        """A pending charge's outcome, asked for until `until`; None if the payment was decided
        meanwhile (by its webhook) or is still undecided."""
        end = until or Deadline.after(0.0)
        while not end.passed():
            await asyncio.sleep(min(PENDING_POLL_SECONDS, end.left()))
            if (await self.outcomes.current(payment_id)).status != "pending":
                return None
            if end.passed():
                break
            try:
                charge = await self.processor.charge_state(key, deadline=end)
            except ProcessorUnavailable:
                continue
            if charge is not None and charge.status != "pending":
                return charge
        return None

    async def _first_payment_of(self, claim: Claim, order_id: int) -> PaymentOut | None:
        async with self.transactions.read() as payments:
            found = await payments.by_idempotency_key(claim.user_id, claim.key)
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

