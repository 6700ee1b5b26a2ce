"""The catalogue: one row per product, with its sale window and per-user limit.

Stock is not here: stock_service owns it (the total, and the live count in Redis) and learns
each product's registration from this service. A row is `pending` from its insert until
stock_service has accepted the registration, `active` from then on, `deleted` once its seller
removed it; only `active` rows are ever shown.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from product_service.db import Base, Timestamp

KINDS = ("general", "preorder")
STATUSES = ("pending", "active", "deleted")


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("kind IN ('general', 'preorder')", name="known_kind"),
        CheckConstraint("status IN ('pending', 'active', 'deleted')", name="known_status"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("limit_per_user IS NULL OR limit_per_user >= 1", name="limit_positive"),
        CheckConstraint("sale_closes_at IS NULL OR sale_opens_at IS NULL "
                        "OR sale_closes_at > sale_opens_at", name="window_in_order"),
        # The list, newest first: (created_at, id) after the status (InnoDB appends the primary
        # key to a secondary index, so id orders ties). Also how the settler finds old
        # pending rows.
        Index("ix_products_status_created_at_id", "status", "created_at", "id"),
        # The list of one kind.
        Index("ix_products_status_kind_created_at_id", "status", "kind", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    seller_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    price: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    sale_opens_at: Mapped[datetime | None] = mapped_column(Timestamp)
    sale_closes_at: Mapped[datetime | None] = mapped_column(Timestamp)
    limit_per_user: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
