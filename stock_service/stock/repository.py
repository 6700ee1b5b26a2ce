"""Every SQL statement of the ledger. Writes run in the caller's transaction; each statement that
guards a rule carries it in its WHERE, so a race ends one way only."""

from __future__ import annotations

import collections
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.internal.stock import Hold, HoldState
from shared.reads import ReadSession
from shared.repository import execute_counted
from stock_service.stock.models import StockHold, StockProduct, StockUserCount

PRODUCT_COLUMNS = (StockProduct.product_id, StockProduct.seller_id, StockProduct.price,
                   StockProduct.total, StockProduct.held, StockProduct.sold,
                   StockProduct.sale_opens_at, StockProduct.sale_closes_at,
                   StockProduct.limit_per_user, StockProduct.deleted_at, StockProduct.version)
PRODUCT_BY_ID = select(*PRODUCT_COLUMNS).where(StockProduct.product_id == bindparam("product_id"))
HOLD_COLUMNS = (StockHold.order_id, StockHold.product_id, StockHold.user_id, StockHold.quantity,
                StockHold.unit_price, StockHold.state, StockHold.expires_at, StockHold.created_at)
HOLD_BY_ID = select(*HOLD_COLUMNS).where(StockHold.order_id == bindparam("order_id"),
                                         StockHold.product_id == bindparam("product_id"))
# The writes of winning holds, built once: every winner of a sale runs them. (Parameters are
# named apart from the columns: SQLAlchemy keeps columns' own names for its SET/VALUES.)
INSERT_HOLD = insert(StockHold)
_count = insert(StockUserCount).values(product_id=bindparam("p_product"),
                                       user_id=bindparam("p_user"), units=bindparam("p_quantity"))
COUNT_USER_UNITS = _count.on_duplicate_key_update(units=StockUserCount.units + _count.inserted.units)
_a_user_past_the_limit = (
    select(StockUserCount.user_id)
    .where(StockUserCount.product_id == bindparam("p_product"),
           StockUserCount.user_id.in_(bindparam("p_users", expanding=True)),
           StockUserCount.units > StockProduct.limit_per_user)
    .exists())
TAKE_UNITS = (
    update(StockProduct)
    .where(StockProduct.product_id == bindparam("p_product"),
           StockProduct.deleted_at.is_(None),
           StockProduct.held + StockProduct.sold + bindparam("p_quantity") <= StockProduct.total,
           or_(StockProduct.limit_per_user.is_(None), ~_a_user_past_the_limit))
    .values(held=StockProduct.held + bindparam("p_quantity"), updated_at=bindparam("p_now")))


@dataclass(frozen=True)
class LedgerProduct:
    product_id: int
    seller_id: int
    price: int
    total: int
    held: int
    sold: int
    sale_opens_at: datetime | None
    sale_closes_at: datetime | None
    limit_per_user: int | None
    deleted_at: datetime | None
    version: int  # of the registration (models.py StockProduct.version)

    @property
    def remaining(self) -> int:
        return self.total - self.held - self.sold


def _product(row: Any) -> LedgerProduct:
    return LedgerProduct(**dict(row))


def _hold(row: Any) -> Hold:
    return Hold.model_validate(dict(row))


class LedgerReads:
    """Reads outside any transaction (the public seller check, the reconciler's comparison)."""

    def __init__(self, reads: ReadSession) -> None:
        self.reads = reads

    async def product(self, product_id: int) -> LedgerProduct | None:
        row = (await self.reads.execute(PRODUCT_BY_ID, {"product_id": product_id})).first()
        return _product(row) if row else None

    async def hold(self, product_id: int, order_id: int) -> Hold | None:
        row = (await self.reads.execute(
            HOLD_BY_ID, {"order_id": order_id, "product_id": product_id})).first()
        return _hold(row) if row else None


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Products

    async def product(self, product_id: int, *, lock: bool = False,
                      shared_lock: bool = False) -> LedgerProduct | None:
        query = select(*PRODUCT_COLUMNS).where(StockProduct.product_id == product_id)
        if lock:
            query = query.with_for_update()
        elif shared_lock:
            query = query.with_for_update(read=True)
        row = (await self.session.execute(query)).mappings().first()
        return _product(row) if row else None

    async def live_products(self) -> list[LedgerProduct]:
        rows = (await self.session.execute(
            select(*PRODUCT_COLUMNS).where(StockProduct.deleted_at.is_(None)))).mappings()
        return [_product(row) for row in rows]

    async def all_products(self) -> list[LedgerProduct]:
        rows = (await self.session.execute(select(*PRODUCT_COLUMNS))).mappings()
        return [_product(row) for row in rows]

    async def all_product_ids(self) -> list[int]:
        return list((await self.session.execute(select(StockProduct.product_id))).scalars())

    async def insert_product(self, *, product_id: int, seller_id: int, price: int, total: int,
                             sale_opens_at: datetime | None, sale_closes_at: datetime | None,
                             limit_per_user: int | None) -> None:
        now = utcnow()
        self.session.add(StockProduct(
            product_id=product_id, seller_id=seller_id, price=price, total=total, held=0, sold=0,
            sale_opens_at=sale_opens_at, sale_closes_at=sale_closes_at,
            limit_per_user=limit_per_user, version=1, created_at=now, updated_at=now))
        await self.session.flush()

    async def change_registration(self, product_id: int, **values: Any) -> None:
        """A change of the product's settings (not of its counts): its version goes up with it,
        in the same statement."""
        await self.update_product(product_id, **values, version=StockProduct.version + 1)

    async def update_product(self, product_id: int, **values: Any) -> None:
        await self.session.execute(
            update(StockProduct).where(StockProduct.product_id == product_id)
            .values(**values, updated_at=utcnow()))

    # Holds: the guard. Every transaction that changes a product's counts locks its rows in one
    # order: the hold, then the user's count, then the product's row, last. The product row is
    # the one every hold of a product queues on, so it is held for one statement and the commit
    # only; and as nothing waits for another row while holding it, no two of these transactions
    # can wait on each other.

    async def add_holds(self, holds: Sequence[Hold]) -> None:
        """One multi-row INSERT of new holds (Redis has just granted them). Raises
        IntegrityError (1062) if an order already has a hold: one per order, ever."""
        await self.session.execute(INSERT_HOLD, [{
            "order_id": hold.order_id, "product_id": hold.product_id, "user_id": hold.user_id,
            "quantity": hold.quantity, "unit_price": hold.unit_price, "state": hold.state,
            "expires_at": hold.expires_at, "created_at": hold.created_at,
            "updated_at": hold.created_at} for hold in holds])

    async def count_user_units(self, product_id: int, units: Mapping[int, int]) -> None:
        """Adds to what each user holds or bought of the product (take_units checks the limit),
        users in ascending order: the lock order of LedgerRepository.move_holds."""
        await self.session.execute(COUNT_USER_UNITS, [
            {"p_product": product_id, "p_user": user_id, "p_quantity": quantity}
            for user_id, quantity in sorted(units.items())])

    async def take_units(self, product_id: int, quantity: int, user_ids: Collection[int]) -> bool:
        """Moves `quantity` into held only if the product is live, still has them, and none of
        the users' counts (already raised by count_user_units in this transaction) is past the
        product's limit."""
        return bool(await execute_counted(self.session, TAKE_UNITS, {
            "p_product": product_id, "p_users": list(user_ids), "p_quantity": quantity,
            "p_now": utcnow()}))

    async def hold_for_update(self, product_id: int, order_id: int) -> Hold | None:
        row = (await self.session.execute(
            select(*HOLD_COLUMNS)
            .where(StockHold.order_id == order_id, StockHold.product_id == product_id)
            .with_for_update())).mappings().first()
        return _hold(row) if row else None

    async def hold(self, order_id: int) -> Hold | None:
        row = (await self.session.execute(
            select(*HOLD_COLUMNS).where(StockHold.order_id == order_id))).mappings().first()
        return _hold(row) if row else None

    async def move_holds(self, holds: Sequence[Hold], *, to: HoldState) -> list[Hold]:
        """held -> committed (sold), or held/committed -> released (units back), for holds read
        FOR UPDATE in this transaction; returns those moved (a hold not in the state it was read
        in is left). Locks in the guard's order: the holds, the users' counts, the products."""
        moved = []
        for hold in holds:
            result = await self.session.execute(
                update(StockHold)
                .where(StockHold.order_id == hold.order_id, StockHold.state == hold.state)
                .values(state=to, updated_at=utcnow()))
            if result.rowcount:  # type: ignore[attr-defined]
                moved.append(hold)
        if to == "released":
            for hold in sorted(moved, key=lambda h: (h.product_id, h.user_id)):
                await self.session.execute(
                    update(StockUserCount)
                    .where(StockUserCount.product_id == hold.product_id,
                           StockUserCount.user_id == hold.user_id)
                    .values(units=StockUserCount.units - hold.quantity))
        changes: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for hold in moved:
            if to == "committed":
                changes[hold.product_id].update(held=-hold.quantity, sold=hold.quantity)
            else:  # a released hold gives back what it held, or what it had sold (a refund)
                changes[hold.product_id]["held" if hold.state == "held" else "sold"] -= (
                    hold.quantity)
        for product_id in sorted(changes):
            delta = changes[product_id]
            await self.update_product(product_id, held=StockProduct.held + delta["held"],
                                      sold=StockProduct.sold + delta["sold"])
        return moved

    async def held_holds(self, *, created_before: datetime, after_order_id: int,
                         limit: int) -> list[Hold]:
        rows = (await self.session.execute(
            select(*HOLD_COLUMNS)
            .where(StockHold.state == "held", StockHold.created_at < created_before,
                   StockHold.order_id > after_order_id)
            .order_by(StockHold.order_id).limit(limit))).mappings()
        return [_hold(row) for row in rows]

    async def expired_holds(self, *, before: datetime, limit: int) -> list[Hold]:
        """Unpaid holds past their expiry, locked; rows another replica is reaping are skipped."""
        rows = (await self.session.execute(
            select(*HOLD_COLUMNS)
            .where(StockHold.state == "held", StockHold.expires_at < before)
            .order_by(StockHold.expires_at).limit(limit)
            .with_for_update(skip_locked=True))).mappings()
        return [_hold(row) for row in rows]

    # What a rebuild loads

    async def live_holds(self, product_id: int) -> list[Hold]:
        rows = (await self.session.execute(
            select(*HOLD_COLUMNS).where(StockHold.product_id == product_id,
                                        StockHold.state.in_(("held", "committed"))))).mappings()
        return [_hold(row) for row in rows]

    async def user_units(self, product_id: int) -> dict[int, int]:
        rows = await self.session.execute(
            select(StockUserCount.user_id, StockUserCount.units)
            .where(StockUserCount.product_id == product_id, StockUserCount.units > 0))
        return {int(user): int(units) for user, units in rows}

    async def counts_from_holds(self, product_id: int) -> tuple[int, int]:
        """(held, sold) summed from the hold rows: how the invariant checks the counters."""
        rows = await self.session.execute(
            select(StockHold.state, func.coalesce(func.sum(StockHold.quantity), 0))
            .where(StockHold.product_id == product_id,
                   StockHold.state.in_(("held", "committed")))
            .group_by(StockHold.state))
        sums = {state: int(total) for state, total in rows}
        return sums.get("held", 0), sums.get("committed", 0)

