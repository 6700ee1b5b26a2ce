"""Every SQL statement of the ledger. Writes run in the caller's transaction; each statement that
guards a rule carries it in its WHERE, so a race ends one way only."""

from __future__ import annotations

import collections
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.internal.stock import Hold, HoldState
from shared.reads import ReadSession
from shared.repository import execute_counted
from stock_service.stock.models import StockHold, StockProduct, StockUserCount

# The statements of a sale (its holds won, committed when paid, released) are built once, on
# the tables rather than the mapped classes: one built per call computes its cache key each
# time, and one on a mapped class goes through the ORM's bulk path, about twice the CPU of the
# same SQL prebuilt on the table. (Parameters are named apart from the columns: SQLAlchemy keeps
# columns' own names for its SET/VALUES.)
PRODUCTS = cast(Table, StockProduct.__table__)
HOLDS = cast(Table, StockHold.__table__)
USER_COUNTS = cast(Table, StockUserCount.__table__)
_P, _H, _U = PRODUCTS.c, HOLDS.c, USER_COUNTS.c
PRODUCT_COLUMNS = (_P.product_id, _P.seller_id, _P.price, _P.total, _P.held, _P.sold,
                   _P.sale_opens_at, _P.sale_closes_at, _P.limit_per_user, _P.deleted_at,
                   _P.version)
PRODUCT_BY_ID = select(*PRODUCT_COLUMNS).where(_P.product_id == bindparam("product_id"))
HOLD_COLUMNS = (_H.order_id, _H.product_id, _H.user_id, _H.quantity, _H.unit_price, _H.state,
                _H.expires_at, _H.created_at)
HOLD_BY_ID = select(*HOLD_COLUMNS).where(_H.order_id == bindparam("order_id"),
                                         _H.product_id == bindparam("product_id"))
HOLD_FOR_UPDATE = HOLD_BY_ID.with_for_update()
INSERT_HOLD = insert(HOLDS)
_count = insert(USER_COUNTS).values(product_id=bindparam("p_product"),
                                    user_id=bindparam("p_user"), units=bindparam("p_quantity"))
COUNT_USER_UNITS = _count.on_duplicate_key_update(units=_U.units + _count.inserted.units)
_a_user_past_the_limit = (
    select(_U.user_id)
    .where(_U.product_id == bindparam("p_product"),
           _U.user_id.in_(bindparam("p_users", expanding=True)),
           _U.units > _P.limit_per_user)
    .exists())
TAKE_UNITS = (
    update(PRODUCTS)
    .where(_P.product_id == bindparam("p_product"),
           _P.deleted_at.is_(None),
           _P.held + _P.sold + bindparam("p_quantity") <= _P.total,
           or_(_P.limit_per_user.is_(None), ~_a_user_past_the_limit))
    .values(held=_P.held + bindparam("p_quantity"), updated_at=bindparam("p_now")))
# A hold moved on only from the state it was read in.
MOVE_HOLD = (update(HOLDS)
             .where(_H.order_id == bindparam("p_order"), _H.state == bindparam("p_from"))
             .values(state=bindparam("p_to"), updated_at=bindparam("p_now")))
USER_UNITS_BACK = (update(USER_COUNTS)
                   .where(_U.product_id == bindparam("p_product"),
                          _U.user_id == bindparam("p_user"))
                   .values(units=_U.units - bindparam("p_quantity")))
MOVE_COUNTS = (update(PRODUCTS)
               .where(_P.product_id == bindparam("p_product"))
               .values(held=_P.held + bindparam("p_held"), sold=_P.sold + bindparam("p_sold"),
                       updated_at=bindparam("p_now")))


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
            HOLD_FOR_UPDATE, {"order_id": order_id, "product_id": product_id})).mappings().first()
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
            if await execute_counted(self.session, MOVE_HOLD, {
                    "p_order": hold.order_id, "p_from": hold.state, "p_to": to,
                    "p_now": utcnow()}):
                moved.append(hold)
        if to == "released":
            for hold in sorted(moved, key=lambda h: (h.product_id, h.user_id)):
                await self.session.execute(USER_UNITS_BACK, {
                    "p_product": hold.product_id, "p_user": hold.user_id,
                    "p_quantity": hold.quantity})
        changes: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for hold in moved:
            if to == "committed":
                changes[hold.product_id].update(held=-hold.quantity, sold=hold.quantity)
            else:  # a released hold gives back what it held, or what it had sold (a refund)
                changes[hold.product_id]["held" if hold.state == "held" else "sold"] -= (
                    hold.quantity)
        for product_id in sorted(changes):
            delta = changes[product_id]
            await self.session.execute(MOVE_COUNTS, {
                "p_product": product_id, "p_held": delta["held"], "p_sold": delta["sold"],
                "p_now": utcnow()})
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

