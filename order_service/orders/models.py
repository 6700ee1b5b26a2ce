"""Orders, the id blocks they are numbered from, and the Idempotency-Key guard on orders."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import CHAR
from sqlalchemy.orm import Mapped, mapped_column

from order_service.db import Base, Timestamp
from shared.internal.orders import OrderStatus

# What an order still owes stock_service (its hold committed or released) and payment_service.
StockEffect = Literal["commit", "release"]
PaymentEffect = Literal["refund"]


UNPAID_ORDER_KEY = "uq_orders_user_id_unpaid_product_id"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending_payment', 'paid', 'payment_failed', 'cancelled', 'expired', "
            "'refunded')", name="known_status"),
        CheckConstraint("quantity BETWEEN 1 AND 100", name="quantity_in_range"),
        CheckConstraint("stock_effect IN ('commit', 'release')", name="known_stock_effect"),
        CheckConstraint("payment_effect IN ('refund')", name="known_payment_effect"),
        # A user's orders, newest first, with or without a status filter.
        Index("ix_orders_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_orders_user_id_status_created_at_id", "user_id", "status", "created_at", "id"),
        # The expiry worker's scan.
        Index("ix_orders_status_expires_at", "status", "expires_at"),
        # Effects still owed to stock_service or payment_service (few rows are not NULL).
        Index("ix_orders_stock_effect", "stock_effect"),
        Index("ix_orders_payment_effect", "payment_effect"),
        # The hard guard behind Idempotency-Key: one order per (user, key), whatever Redis says.
        UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_id_idempotency_key"),
        # One unpaid order per buyer per product: only a pending order has an unpaid_product_id
        # (NULLs never collide), so two creates racing each other end with one order.
        UniqueConstraint("user_id", "unpaid_product_id", name=UNPAID_ORDER_KEY),
    )

    # Made by the service (order_service/orders/ids.py) before the units are reserved, so the
    # reserve is keyed by it and a retry never takes a second hold.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger)
    product_id: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[OrderStatus] = mapped_column(String(20))
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    # The payment allowed to charge the order now (payment_service holds the lease's token).
    lease_token: Mapped[str | None] = mapped_column(CHAR(32))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    payment_id: Mapped[int | None] = mapped_column(BigInteger)
    # What stock_service and payment_service still have to be told; NULL once they were.
    stock_effect: Mapped[StockEffect | None] = mapped_column(String(8))
    payment_effect: Mapped[PaymentEffect | None] = mapped_column(String(8))
    idempotency_key: Mapped[str | None] = mapped_column(String(255, collation="utf8mb4_bin"))
    idempotency_fingerprint: Mapped[str | None] = mapped_column(CHAR(64))
    # The product, while the order is unpaid (pending_payment); NULL in every other state.
    unpaid_product_id: Mapped[int | None] = mapped_column(
        BigInteger, Computed("IF(status = 'pending_payment', product_id, NULL)", persisted=True))


class IdBlock(Base):
    """The next free id of a sequence; a process takes a block at a time (hi-lo)."""

    __tablename__ = "id_blocks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_id: Mapped[int] = mapped_column(BigInteger)
