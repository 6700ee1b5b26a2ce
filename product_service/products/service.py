"""The rules of products: who may change what and when, and the protocol that keeps the
catalogue and stock_service's registrations in step.

Creating a product: its row is written `pending` (invisible) and committed on its own, the
product is registered with stock_service, then the request's session marks it `active`. If
stock_service refuses, the pending row is deleted and its problem answered; if the call fails
(down, timeout, 5xx) the outcome is unknown, so the product is also withdrawn from stock_service
(best effort) before the row goes, and the answer is 503. A row whose cleanup could not be
done is left pending for the settler (tasks.py), which withdraws it from stock_service, then
deletes it. So a client that got 201 has a product on both sides, and any other outcome leaves
none on either side that can be ordered.

Changing the price, window or limit: the row is locked, the change checked, written, sent to
stock_service, and committed only if stock_service took it. Deleting: the row is locked,
the product withdrawn from stock_service, then marked deleted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from product_service.clients import StockClient
from product_service.products.cache import DetailInvalidations, ProductDetails
from product_service.products.errors import (
    NotTheSeller,
    ProductNotFound,
    SaleStarted,
    StockUnavailable,
)
from product_service.products.repository import ProductsRepository, Row
from product_service.products.schemas import ProductCreate, ProductOut, ProductUpdate, check_window
from shared.clock import utcnow
from shared.db import in_own_transaction
from shared.errors import ProblemError, ValidationFailed
from shared.http import ServiceCallFailed
from shared.internal.stock import StockRegistration
from shared.pagination import Key, page_of, row_key
from shared.reads import ReadSession
from shared.sale_window import sale_state
from shared.schemas import Page

logger = logging.getLogger("product_service.products")

# What stock_service keeps of a product: a change to any of them is sent to it.
STOCK_FIELDS = frozenset({"price", "sale_opens_at", "sale_closes_at", "limit_per_user"})
# Fixed once the sale has opened: the buyers in the line decided on them (stock_service refuses
# a change of the window and limit too).
FIXED_ONCE_OPEN = frozenset({"price", "sale_opens_at", "sale_closes_at", "limit_per_user"})

def product_out(row: Row, now: datetime) -> ProductOut:
    return ProductOut.model_validate(
        {**row, "sale_state": sale_state(row["sale_opens_at"], row["sale_closes_at"], now)})


def _aware(value: datetime | None) -> datetime | None:
    # StockRegistration takes times with a zone, as every body on the wire does.
    return None if value is None else value.replace(tzinfo=UTC)


def registration_of(row: Row, *, total: int | None = None) -> StockRegistration:
    """The product as stock_service needs it; total None: keep the one it has."""
    return StockRegistration(
        seller_id=row["seller_id"], price=row["price"], total=total,
        sale_opens_at=_aware(row["sale_opens_at"]), sale_closes_at=_aware(row["sale_closes_at"]),
        limit_per_user=row["limit_per_user"])


class ProductsReader:
    """The routes that only read: no transaction. Built once in the lifespan."""

    def __init__(self, reads: ReadSession, details: ProductDetails) -> None:
        self.products = ProductsRepository(reads=reads)
        self.details = details

    async def detail(self, product_id: int) -> bytes:
        body = await self.details.body(product_id)
        if body is None:
            raise ProductNotFound()
        return body

    async def list(self, *, kind: str | None, cursor: str | None,
                   limit: int) -> Page[ProductOut]:
        rows = await self.products.page(kind=kind, before=Key.from_cursor(cursor), limit=limit)
        items, next_cursor = page_of(rows, limit, row_key)
        now = utcnow()
        return Page(items=[product_out(row, now) for row in items], next_cursor=next_cursor)


class ProductsService:
    """Changes, on the request's session; what it changed is invalidated after the commit."""

    def __init__(self, *, session: AsyncSession, stock: StockClient,
                 invalidations: DetailInvalidations) -> None:
        self.session = session
        self.products = ProductsRepository(session=session)
        self.stock = stock
        self.invalidations = invalidations

    async def create(self, seller_id: int, body: ProductCreate) -> ProductOut:
        now = utcnow()
        row: Row = {"seller_id": seller_id, "name": body.name, "description": body.description,
                    "price": body.price, "kind": body.kind, "sale_opens_at": body.sale_opens_at,
                    "sale_closes_at": body.sale_closes_at, "limit_per_user": body.limit_per_user,
                    "created_at": now, "updated_at": now}

        async def write_pending(own: AsyncSession) -> int:
            fields = {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
            return await ProductsRepository(session=own).insert_pending(**fields, now=now)

        # Committed before stock_service hears of it, so a crash from here on leaves a row
        # the settler finds.
        row["id"] = product_id = await in_own_transaction(self.session, write_pending)
        try:
            await self.stock.register(product_id, registration_of(row, total=body.stock))
        except ServiceCallFailed as failure:
            logger.warning("stock_service did not take a new product",
                           extra={"product_id": product_id, "reason": failure.reason})
            # It may have registered it before the answer was lost.
            if await self.stock.unregister_quietly(product_id):
                await self._forget_pending(product_id)
            raise StockUnavailable() from failure
        except ProblemError:
            await self._forget_pending(product_id)
            raise
        if not await self.products.activate(product_id):
            # The settler withdrew it: this request outlived pending_settle_after_seconds.
            raise StockUnavailable()
        # A read of the id while it was pending may have cached "no such product".
        self.invalidations.add(product_id)
        return product_out(row, now)

    async def _forget_pending(self, product_id: int) -> None:
        async def delete(own: AsyncSession) -> bool:
            return await ProductsRepository(session=own).delete_pending(product_id)

        try:
            await in_own_transaction(self.session, delete)
        except Exception:
            logger.warning("pending product not deleted; the settler will",
                           extra={"product_id": product_id}, exc_info=True)

    async def update(self, user_id: int, product_id: int, change: ProductUpdate) -> ProductOut:
        row = await self._lock_own(user_id, product_id)
        changes = {name: value for name, value in change.changes().items()
                   if row[name] != value}
        now = utcnow()
        if not changes:
            return product_out(row, now)
        merged = {**row, **changes, "updated_at": now}
        problem = check_window(merged["kind"], merged["sale_opens_at"], merged["sale_closes_at"])
        if problem:
            raise ValidationFailed(problem, loc=("body",))
        opened = sale_state(row["sale_opens_at"], row["sale_closes_at"], now) != "scheduled"
        if opened and changes.keys() & FIXED_ONCE_OPEN:
            raise SaleStarted("The sale has opened: its window, price and purchase limit "
                              "can no longer change.")
        await self.products.update(product_id, changes, now=now)
        if changes.keys() & STOCK_FIELDS:
            await self._change_registration(product_id, merged, previous=row)
        self.invalidations.add(product_id)
        return product_out(merged, now)

    async def _change_registration(self, product_id: int, changed: Row, *, previous: Row) -> None:
        try:
            await self.stock.register(product_id, registration_of(changed))
        except ServiceCallFailed as failure:
            # The change may have reached stock_service before the answer was lost: put its
            # registration back as it was, since this transaction will roll back.
            try:
                await self.stock.register(product_id, registration_of(previous))
            except Exception:
                logger.warning("stock registration may differ from the product until its next "
                               "change", extra={"product_id": product_id}, exc_info=True)
            raise StockUnavailable() from failure

    async def delete(self, user_id: int, product_id: int) -> None:
        await self._lock_own(user_id, product_id)
        try:
            await self.stock.unregister(product_id)
        except ServiceCallFailed as failure:
            raise StockUnavailable() from failure
        await self.products.mark_deleted(product_id, now=utcnow())
        self.invalidations.add(product_id)

    async def _lock_own(self, user_id: int, product_id: int) -> dict[str, Any]:
        row = await self.products.lock_active(product_id)
        if row is None:
            raise ProductNotFound()
        if row["seller_id"] != user_id:
            raise NotTheSeller()
        return row
