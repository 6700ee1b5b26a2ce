"""The ledger: the truth behind the live inventory in Redis.

Per product its total and how many units are held (by unpaid orders) and sold; one row per hold
(keyed by the order it is for); per product and user the units they hold or bought. The CHECK
constraints are the last word: whatever Redis believes, MySQL refuses a hold that would sell a
unit twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.internal.stock import HoldState
from stock_service.db import Base, Timestamp

HOLD_STATES = ("held", "committed", "released")


class StockProduct(Base):
    __tablename__ = "stock_products"
    __table_args__ = (
        CheckConstraint("held >= 0 AND sold >= 0 AND held + sold <= total", name="within_total"),
    )

    # product_service's id: stock_service learns products, it does not make them.
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seller_id: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    sold: Mapped[int] = mapped_column(BigInteger, default=0)
    sale_opens_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sale_closes_at: Mapped[datetime | None] = mapped_column(Timestamp)
    limit_per_user: Mapped[int | None] = mapped_column(Integer)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Raised by every change of the registration (window, price, limit, seller, total, deleted;
    # not by holds): Redis keeps the version of the settings it has, and a writer holding an
    # older read of the row (the reconciler, a rebuild) never puts older settings back.
    version: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class StockHold(Base):
    __tablename__ = "stock_holds"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="positive_quantity"),
        CheckConstraint("state IN ('held', 'committed', 'released')", name="known_state"),
        # The rebuild reads a product's live holds; the reconciler counts them.
        Index("ix_stock_holds_product_id_state", "product_id", "state"),
        # The reaper finds holds left unpaid past their expiry.
        Index("ix_stock_holds_state_expires_at", "state", "expires_at"),
    )

    # One hold per order, ever: a replayed reserve can never take a second one.
    order_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # No foreign key to stock_products: see migration 0003 (the product row's lock order).
    product_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[HoldState] = mapped_column(String(16))
    # When an unpaid hold gives its units back by itself, whoever forgets it (the order's
    # payment deadline, passed with the reserve).
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class StockUserCount(Base):
    """Units a user holds or bought of a product: what limit_per_user is checked against."""

    __tablename__ = "stock_user_counts"
    __table_args__ = (CheckConstraint("units >= 0", name="not_negative"),)

    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
