"""The catalog of stock: products registered and changed (by product_service), the seller's
total, and the public view of a product's stock level.

A registration changes the ledger first, then Redis (CONFIGURE, or a rebuild when Redis has
nothing of the product); if Redis cannot be told, the reconciler (stock/rebuild.py) repairs it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from redis.exceptions import RedisError

from shared.clock import utcnow
from shared.db import Transactions
from shared.errors import InvalidState, ValidationFailed
from shared.internal.stock import StockEntry, StockRegistration
from shared.reads import ReadSession
from shared.sale_window import sale_state
from stock_service.stock.admission import StockAdmission, level_of
from stock_service.stock.errors import (
    NotTheSeller,
    ProductNotFound,
    SaleStarted,
    StockRebuilding,
)
from stock_service.stock.rebuild import LiveState, settings_fields
from stock_service.stock.repository import LedgerProduct, LedgerReads, LedgerRepository
from stock_service.stock.schemas import StockLevel
from stock_service.stock.scripts import StockScripts

logger = logging.getLogger("stock_service.stock")


def entry_body(product: LedgerProduct, now: datetime) -> StockEntry:
    return StockEntry(
        product_id=product.product_id, seller_id=product.seller_id, price=product.price,
        total=product.total, held=product.held, sold=product.sold, remaining=product.remaining,
        sale_opens_at=product.sale_opens_at, sale_closes_at=product.sale_closes_at,
        limit_per_user=product.limit_per_user,
        sale_state=sale_state(product.sale_opens_at, product.sale_closes_at, now),
        deleted=product.deleted_at is not None)


class CatalogService:
    def __init__(self, *, transactions: Transactions[LedgerRepository], reads: ReadSession,
                 scripts: StockScripts, live: LiveState, admission: StockAdmission) -> None:
        self.transactions = transactions
        self.reads = LedgerReads(reads)
        self.scripts = scripts
        self.live = live
        self.admission = admission

    async def register(self, product_id: int, registration: StockRegistration) -> StockEntry:
        """Creates the product's stock, or applies a change of its registration. Idempotent:
        the same registration sent twice is one change."""
        now = utcnow()
        async with self.transactions.write() as ledger:
            product = await ledger.product(product_id, lock=True)
            if product is None:
                if registration.total is None:
                    raise ValidationFailed("A new product needs its total stock.",
                                           loc=("body", "total"))
                await ledger.insert_product(
                    product_id=product_id, seller_id=registration.seller_id,
                    price=registration.price, total=registration.total,
                    sale_opens_at=registration.sale_opens_at,
                    sale_closes_at=registration.sale_closes_at,
                    limit_per_user=registration.limit_per_user)
            else:
                if product.deleted_at is not None:
                    raise ProductNotFound()
                if registration.total is None:
                    registration = registration.model_copy(update={"total": product.total})
                _check_change_allowed(product, registration, now)
                await ledger.change_registration(
                    product_id, seller_id=registration.seller_id, price=registration.price,
                    total=registration.total, sale_opens_at=registration.sale_opens_at,
                    sale_closes_at=registration.sale_closes_at,
                    limit_per_user=registration.limit_per_user)
            updated = await ledger.product(product_id)
        assert updated is not None
        await self._apply_settings(updated)
        return entry_body(updated, now)

    async def unregister(self, product_id: int) -> None:
        """No more orders for the product; its holds can still be released or committed."""
        async with self.transactions.write() as ledger:
            product = await ledger.product(product_id, lock=True)
            if product is None:
                return
            if product.deleted_at is None:
                await ledger.change_registration(product_id, deleted_at=utcnow())
            updated = await ledger.product(product_id)
        assert updated is not None
        await self._apply_settings(updated)

    async def _apply_settings(self, product: LedgerProduct) -> None:
        try:
            applied = await self.scripts.configure(product.product_id, settings_fields(product))
            if applied is None:
                await self.live.rebuild_or_wait(product.product_id)
            self.admission.changed(product.product_id)
        except RedisError:
            logger.warning("Redis not told of a registration; the reconciler will repair it",
                           extra={"product_id": product.product_id})

    async def get_entry(self, product_id: int) -> StockEntry:
        product = await self.reads.product(product_id)
        if product is None:
            raise ProductNotFound()
        return entry_body(product, utcnow())

    async def set_total(self, product_id: int, *, seller_id: int, total: int) -> StockLevel:
        """The public PUT: the seller sets the total before the sale opens."""
        now = utcnow()
        async with self.transactions.write() as ledger:
            product = await ledger.product(product_id, lock=True)
            if product is None or product.deleted_at is not None:
                raise ProductNotFound()
            if product.seller_id != seller_id:
                raise NotTheSeller()
            if sale_state(product.sale_opens_at, product.sale_closes_at, now) != "scheduled":
                raise SaleStarted()
            if total < product.held + product.sold:
                raise InvalidState("Units are already held or sold: the total cannot go below them.")
            await ledger.change_registration(product_id, total=total)
            updated = await ledger.product(product_id)
        assert updated is not None
        await self._apply_settings(updated)
        return StockLevel(product_id=product_id, remaining=updated.remaining,
                          sale_state=sale_state(updated.sale_opens_at, updated.sale_closes_at,
                                                now))

    async def public_level(self, product_id: int) -> StockLevel:
        """Served from Redis alone (through admission's view memory): the remaining count and
        the state by Redis's clock."""
        view = await self.admission.live_view(product_id)
        if view.rebuilding:
            raise StockRebuilding()
        if view.active is None:
            if not await self.live.epoch_present():
                self.live.request_full_rebuild()
                raise StockRebuilding()
            raise ProductNotFound()
        if not view.active:
            raise ProductNotFound()
        return level_of(product_id, view)


def _check_change_allowed(product: LedgerProduct, change: StockRegistration,
                          now: datetime) -> None:
    """Once the sale has opened its window, total and limit are fixed; the ledger's counts
    bound the total in any case."""
    opened = sale_state(product.sale_opens_at, product.sale_closes_at, now) != "scheduled"
    fixed = (product.sale_opens_at != change.sale_opens_at
             or product.sale_closes_at != change.sale_closes_at
             or product.total != change.total
             or product.limit_per_user != change.limit_per_user)
    if opened and fixed:
        raise SaleStarted()
    assert change.total is not None, "register() fills in the total it keeps"
    if change.total < product.held + product.sold:
        raise InvalidState("Units are already held or sold: the total cannot go below them.")
