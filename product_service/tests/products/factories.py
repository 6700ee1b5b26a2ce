"""Typed factories: product rows made straight in the test schema (no stock registration), for
tests of reads and of the settler. Each flushes; the test commits when the app under test
(another connection) must see the rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from product_service.products.models import Product
from shared.clock import utcnow


async def make_product(
    session: AsyncSession,
    *,
    seller_id: int,
    name: str = "Keyboard",
    kind: str = "general",
    price: int = 10_000,
    status: str = "active",
    sale_opens_at: datetime | None = None,
    sale_closes_at: datetime | None = None,
    limit_per_user: int | None = None,
    created_at: datetime | None = None,
) -> Product:
    now = created_at or utcnow()
    product = Product(seller_id=seller_id, name=name, description="", price=price, kind=kind,
                      sale_opens_at=sale_opens_at, sale_closes_at=sale_closes_at,
                      limit_per_user=limit_per_user, status=status, created_at=now,
                      updated_at=now)
    session.add(product)
    await session.flush()
    return product
