"""Typed factories: a registered product (ledger row and live state) in one call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import utcnow
from shared.db import Transactions
from shared.internal.stock import StockEntry, StockRegistration
from stock_service.dependencies import Resources
from stock_service.stock.admission import StockAdmission
from stock_service.stock.catalog import CatalogService
from stock_service.stock.holds import HoldService
from stock_service.stock.rebuild import LiveState
from stock_service.stock.repository import LedgerRepository
from stock_service.tests.conftest import new_id


@dataclass(frozen=True)
class Stock:
    """The parts of stock over one admission, as the lifespan wires them."""

    admission: StockAdmission
    live: LiveState
    holds: HoldService
    catalog: CatalogService


def stock_parts(resources: Resources, *, sold_out_memory: float = 0.0, view_memory: float = 0.0,
                sessions: async_sessionmaker[AsyncSession] | None = None) -> Stock:
    """Stock with memories of its own (the app's are off in tests), or on another database,
    beside the app's Redis scripts and reads."""
    transactions = Transactions(sessions or resources.datastores.sessionmaker, LedgerRepository)
    admission = StockAdmission(scripts=resources.scripts, sold_out_memory=sold_out_memory,
                               view_memory=view_memory)
    live = LiveState(transactions=transactions, redis=resources.datastores.redis,
                     scripts=resources.scripts, on_change=admission.changed)
    reads = resources.datastores.reads
    return Stock(admission, live,
                 HoldService(transactions=transactions, reads=reads, scripts=resources.scripts,
                             live=live, admission=admission, hold_ttl=timedelta(minutes=15)),
                 CatalogService(transactions=transactions, reads=reads,
                                scripts=resources.scripts, live=live, admission=admission))


async def make_product(
    catalog: CatalogService,
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
    return await catalog.register(new_id(), registration)
