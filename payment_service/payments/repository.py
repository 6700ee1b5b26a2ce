"""Every SQL statement of payments and their outbox.

The statements a payment makes are built once, on the tables (not the mapped classes), with
their values as parameters: a statement built per call computed its cache key each time, and
the ORM's bulk path around it, about twice the CPU of the same SQL prebuilt (measured on a
SELECT FOR UPDATE and two UPDATEs in one transaction). The money path runs a dozen
transactions a payment across three services, beside a sale's opening."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, func, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service.payments.models import Payment, PaymentOutcome
from shared.clock import utcnow
from shared.reads import ReadSession
from shared.repository import execute_counted, execute_insert

PAYMENTS = cast(Table, Payment.__table__)
OUTBOX = cast(Table, PaymentOutcome.__table__)
PAYMENT_COLUMNS = (PAYMENTS.c.id, PAYMENTS.c.order_id, PAYMENTS.c.user_id, PAYMENTS.c.amount,
                   PAYMENTS.c.status, PAYMENTS.c.failure_code, PAYMENTS.c.lease_token,
                   PAYMENTS.c.created_at)
PAYMENT_BY_ID = select(*PAYMENT_COLUMNS).where(PAYMENTS.c.id == bindparam("payment_id"))
PAYMENT_BY_KEY = select(*PAYMENT_COLUMNS, PAYMENTS.c.idempotency_fingerprint).where(
    PAYMENTS.c.user_id == bindparam("p_user"), PAYMENTS.c.idempotency_key == bindparam("p_key"))
INSERT_PAYMENT = insert(PAYMENTS)
INSERT_OUTCOME = insert(OUTBOX)
_UNDELIVERED_COLUMNS = (OUTBOX.c.id, OUTBOX.c.payment_id, OUTBOX.c.order_id, OUTBOX.c.kind,
                        OUTBOX.c.lease_token)
UNDELIVERED_OF = select(*_UNDELIVERED_COLUMNS).where(
    OUTBOX.c.payment_id == bindparam("p_payment"), OUTBOX.c.delivered_at.is_(None))
OUTCOME_DELIVERED = (update(OUTBOX).where(OUTBOX.c.id == bindparam("p_outcome"))
                     .values(delivered_at=bindparam("p_now")))
LATEST_OF_ORDER = (select(*PAYMENT_COLUMNS).where(Payment.order_id == bindparam("order_id"))
                   .order_by(Payment.id.desc()).limit(1))
# The oldest pending payment's creation (ix_payments_status_created_at answers it from the index).
OLDEST_PENDING = (select(func.min(Payment.created_at).label("since"))
                  .where(Payment.status == "pending"))


@dataclass(frozen=True)
class PaymentRow:
    id: int
    order_id: int
    user_id: int
    amount: int
    status: str
    failure_code: str | None
    lease_token: str
    created_at: datetime


@dataclass(frozen=True)
class Undelivered:
    id: int
    payment_id: int
    order_id: int
    kind: str
    lease_token: str


@functools.cache
def _settle(values: frozenset[str]) -> Update:
    """A pending (or succeeded) payment's one conditional transition, setting the columns named
    by `values` (p_<column>); one statement for each set of columns, built once."""
    return (update(PAYMENTS)
            .where(PAYMENTS.c.id == bindparam("p_payment"),
                   PAYMENTS.c.status == bindparam("p_from"))
            .values({"updated_at": bindparam("p_now"),
                     **{name.removeprefix("p_"): bindparam(name)
                        for name in values if name != "p_now"}}))


def _payment(row: Any) -> PaymentRow:
    return PaymentRow(**dict(row))


class PaymentReads:
    def __init__(self, reads: ReadSession) -> None:
        self.reads = reads

    async def payment(self, payment_id: int) -> PaymentRow | None:
        row = (await self.reads.execute(PAYMENT_BY_ID, {"payment_id": payment_id})).first()
        return _payment(row) if row else None

    async def latest_of_order(self, order_id: int) -> PaymentRow | None:
        row = (await self.reads.execute(LATEST_OF_ORDER, {"order_id": order_id})).first()
        return _payment(row) if row else None

    async def oldest_pending_since(self) -> datetime | None:
        row = (await self.reads.execute(OLDEST_PENDING, {})).first()
        return row["since"] if row else None


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_pending(self, *, order_id: int, user_id: int, amount: int, card_last4: str,
                             lease_token: str, idempotency_key: str | None,
                             idempotency_fingerprint: str | None) -> PaymentRow:
        """The payment as written. Raises IntegrityError (1062) if the order already has a
        payment pending or succeeded, or the user's Idempotency-Key already made a payment."""
        now = utcnow()
        payment_id = await execute_insert(self.session, INSERT_PAYMENT, {
            "order_id": order_id, "user_id": user_id, "amount": amount, "status": "pending",
            "card_last4": card_last4, "lease_token": lease_token, "active_order_id": order_id,
            "idempotency_key": idempotency_key, "idempotency_fingerprint": idempotency_fingerprint,
            "void_owed": False, "created_at": now, "updated_at": now})
        return PaymentRow(id=payment_id, order_id=order_id, user_id=user_id, amount=amount,
                          status="pending", failure_code=None, lease_token=lease_token,
                          created_at=now)

    async def by_idempotency_key(self, user_id: int,
                                 key: str) -> tuple[PaymentRow, str | None] | None:
        row = (await self.session.execute(
            PAYMENT_BY_KEY, {"p_user": user_id, "p_key": key})).mappings().first()
        if row is None:
            return None
        values = dict(row)
        fingerprint = values.pop("idempotency_fingerprint")
        return _payment(values), fingerprint

    async def holding_charges(self, order_id: int) -> list[PaymentRow]:
        """The order's payments that hold a charge or may yet (pending, succeeded), or gave
        one back (refunded); failed ones hold none (their void is owed or done)."""
        rows = await self.session.execute(
            select(*PAYMENT_COLUMNS)
            .where(Payment.order_id == order_id,
                   Payment.status.in_(("pending", "succeeded", "refunded")))
            .order_by(Payment.id))
        return [_payment(row) for row in rows.mappings()]

    async def settle(self, payment_id: int, *, from_status: str, to_status: str,
                     failure_code: str | None = None, void_owed: bool = False) -> bool:
        """One conditional transition; a failed payment lets go of its order. `void_owed`: its
        charge may stand and must be voided (`void_confirmed` once it is)."""
        values: dict[str, Any] = {"p_status": to_status, "p_now": utcnow()}
        if failure_code is not None:
            values["p_failure_code"] = failure_code
        if void_owed:
            values["p_void_owed"] = True
        if to_status == "failed":
            values["p_active_order_id"] = None
        return bool(await execute_counted(self.session, _settle(frozenset(values)), {
            **values, "p_payment": payment_id, "p_from": from_status}))

    async def stale_pending(self, *, before: datetime, limit: int) -> list[PaymentRow]:
        rows = await self.session.execute(
            select(*PAYMENT_COLUMNS).where(Payment.status == "pending",
                                           Payment.created_at < before)
            .limit(limit))
        return [_payment(row) for row in rows.mappings()]

    async def owing_voids(self, *, limit: int) -> list[PaymentRow]:
        rows = await self.session.execute(
            select(*PAYMENT_COLUMNS).where(Payment.void_owed.is_(True)).limit(limit))
        return [_payment(row) for row in rows.mappings()]

    async def void_confirmed(self, payment_id: int) -> None:
        await self.session.execute(
            update(Payment).where(Payment.id == payment_id).values(void_owed=False))

    # Outbox

    async def add_outcome(self, payment: PaymentRow, kind: str) -> int:
        return await execute_insert(self.session, INSERT_OUTCOME, {
            "payment_id": payment.id, "order_id": payment.order_id, "kind": kind,
            "lease_token": payment.lease_token, "attempts": 0, "created_at": utcnow()})

    async def undelivered(self, *, older_than: datetime, limit: int) -> list[Undelivered]:
        rows = await self.session.execute(
            select(PaymentOutcome.id, PaymentOutcome.payment_id, PaymentOutcome.order_id,
                   PaymentOutcome.kind, PaymentOutcome.lease_token)
            .where(PaymentOutcome.delivered_at.is_(None),
                   PaymentOutcome.created_at < older_than)
            .order_by(PaymentOutcome.id).limit(limit))
        return [Undelivered(*row) for row in rows]

    async def undelivered_of(self, payment_id: int) -> Undelivered | None:
        row = (await self.session.execute(UNDELIVERED_OF, {"p_payment": payment_id})).first()
        return Undelivered(*row) if row else None

    async def delivered(self, outcome_id: int) -> None:
        await self.session.execute(OUTCOME_DELIVERED, {"p_outcome": outcome_id, "p_now": utcnow()})

    async def attempted(self, outcome_id: int) -> None:
        await self.session.execute(
            update(PaymentOutcome).where(PaymentOutcome.id == outcome_id)
            .values(attempts=PaymentOutcome.attempts + 1))
