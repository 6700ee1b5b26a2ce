"""Every SQL statement of payments and their outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment_service.payments.models import Payment, PaymentOutcome
from shared.clock import utcnow
from shared.reads import ReadSession
from shared.repository import execute_counted, execute_insert

PAYMENT_COLUMNS = (Payment.id, Payment.order_id, Payment.user_id, Payment.amount,
                   Payment.status, Payment.failure_code, Payment.lease_token,
                   Payment.created_at)
PAYMENT_BY_ID = select(*PAYMENT_COLUMNS).where(Payment.id == bindparam("payment_id"))
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
                             idempotency_fingerprint: str | None) -> int:
        """Raises IntegrityError (1062) if the order already has a payment pending or
        succeeded, or the user's Idempotency-Key already made a payment."""
        now = utcnow()
        return await execute_insert(self.session, insert(Payment).values(
            order_id=order_id, user_id=user_id, amount=amount, status="pending",
            card_last4=card_last4, lease_token=lease_token, active_order_id=order_id,
            idempotency_key=idempotency_key, idempotency_fingerprint=idempotency_fingerprint,
            created_at=now, updated_at=now))

    async def by_idempotency_key(self, user_id: int,
                                 key: str) -> tuple[PaymentRow, str | None] | None:
        row = (await self.session.execute(
            select(*PAYMENT_COLUMNS, Payment.idempotency_fingerprint)
            .where(Payment.user_id == user_id, Payment.idempotency_key == key))).mappings().first()
        if row is None:
            return None
        values = dict(row)
        fingerprint = values.pop("idempotency_fingerprint")
        return _payment(values), fingerprint

    async def payment(self, payment_id: int, *, lock: bool = False) -> PaymentRow | None:
        query = select(*PAYMENT_COLUMNS).where(Payment.id == payment_id)
        if lock:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return _payment(row) if row else None

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
        values: dict[str, Any] = {"status": to_status, "updated_at": utcnow()}
        if failure_code is not None:
            values["failure_code"] = failure_code
        if void_owed:
            values["void_owed"] = True
        if to_status == "failed":
            values["active_order_id"] = None
        return bool(await execute_counted(self.session, update(Payment).where(
            Payment.id == payment_id, Payment.status == from_status).values(**values)))

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
        return await execute_insert(self.session, insert(PaymentOutcome).values(
            payment_id=payment.id, order_id=payment.order_id, kind=kind,
            lease_token=payment.lease_token, attempts=0, created_at=utcnow()))

    async def undelivered(self, *, older_than: datetime, limit: int) -> list[Undelivered]:
        rows = await self.session.execute(
            select(PaymentOutcome.id, PaymentOutcome.payment_id, PaymentOutcome.order_id,
                   PaymentOutcome.kind, PaymentOutcome.lease_token)
            .where(PaymentOutcome.delivered_at.is_(None),
                   PaymentOutcome.created_at < older_than)
            .order_by(PaymentOutcome.id).limit(limit))
        return [Undelivered(*row) for row in rows]

    async def undelivered_of(self, payment_id: int) -> Undelivered | None:
        row = (await self.session.execute(
            select(PaymentOutcome.id, PaymentOutcome.payment_id, PaymentOutcome.order_id,
                   PaymentOutcome.kind, PaymentOutcome.lease_token)
            .where(PaymentOutcome.payment_id == payment_id,
                   PaymentOutcome.delivered_at.is_(None)))).first()
        return Undelivered(*row) if row else None

    async def delivered(self, outcome_id: int) -> None:
        await self.session.execute(
            update(PaymentOutcome).where(PaymentOutcome.id == outcome_id)
            .values(delivered_at=utcnow()))

    async def attempted(self, outcome_id: int) -> None:
        await self.session.execute(
            update(PaymentOutcome).where(PaymentOutcome.id == outcome_id)
            .values(attempts=PaymentOutcome.attempts + 1))
