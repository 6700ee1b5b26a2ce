"""Typed factories: a registered product (ledger row and live state) in one call."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.clock import utcnow
from shared.internal.stock import StockEntry, StockRegistration
from stock_service.stock.service import StockService
from stock_service.tests.conftest import new_id


async def make_product(
    stock: StockService,
    *,
    total: int = 10,
    price: int = 10_000,
    seller_id: int = 1,
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    limit_per_user: int | None = None,
    open_now: bool = True,
) -> StockEntry:
    """Open for orders by default (a window that opened a minute ago)."""
    if open_now and opens_at is None:
        opens_at = utcnow() - timedelta(minutes=1)
    registration = StockRegistration(
        seller_id=seller_id, price=price, total=total, sale_opens_at=None, sale_closes_at=None,
        limit_per_user=limit_per_user)
    # Built, then given naive UTC times directly: the factory speaks the ledger's language.
    registration = registration.model_copy(update={"sale_opens_at": opens_at,
                                                   "sale_closes_at": closes_at})
    return await stock.register(new_id(), registration)
