"""Payments and the outbox of their outcomes still to be told to order_service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.mysql import CHAR
from sqlalchemy.orm import Mapped, mapped_column

from payment_service.db import Base, Timestamp


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'refunded')",
                        name="known_status"),
        Index("ix_payments_order_id_id", "order_id", "id"),
        Index("ix_payments_status_created_at", "status", "created_at"),
        Index("ix_payments_void_owed", "void_owed"),
        # At most one payment of an order pending or succeeded, ever at once: the database's
        # word, not only a check. A failed payment lets go of the order (NULL repeats freely).
        UniqueConstraint("active_order_id", name="uq_payments_active_order_id"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_payments_user_id_idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    # Only the last four digits of a card are ever stored (or logged).
    card_last4: Mapped[str] = mapped_column(CHAR(4))
    # The order's payment lease this payment charged under (shared.internal.orders).
    lease_token: Mapped[str] = mapped_column(CHAR(32))
    active_order_id: Mapped[int | None] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(255, collation="utf8mb4_bin"))
    idempotency_fingerprint: Mapped[str | None] = mapped_column(CHAR(64))
    # Failed while its charge may stand at the processor: voided (now, or by the stale-payment
    # loop until the processor confirms), so no failed payment keeps a card charged.
    void_owed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class PaymentOutcome(Base):
    """An outcome order_service must hear (paid, or failed), written in the transaction that
    decided it and delivered until it lands: a succeeded payment always ends with a paid
    order."""

    __tablename__ = "payment_outbox"
    __table_args__ = (
        CheckConstraint("kind IN ('paid', 'failed')", name="known_kind"),
        Index("ix_payment_outbox_delivered_at_id", "delivered_at", "id"),
        Index("ix_payment_outbox_payment_id", "payment_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))
    lease_token: Mapped[str] = mapped_column(CHAR(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)
