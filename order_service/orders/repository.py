"""Every SQL statement of orders. Each state change is one conditional UPDATE with the expected
old state in its WHERE, so a race between pay, cancel and expire ends one way only: whoever
matches the row first wins, the others match nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from order_service.orders.models import IdBlock, Order, PaymentEffect, StockEffect
from order_service.orders.schemas import OrderOut
from shared.clock import utcnow
from shared.internal.orders import OrderStatus
from shared.pagination import Key, key_params, older_than
from shared.reads import ReadSession
from shared.repository import execute_counted

# Statements are built once, on the table, with their values as parameters: one built per call
# computes its cache key each time, and one on the mapped class goes through the ORM's bulk
# path, about twice the CPU of the same SQL prebuilt on the table. A payment makes five
# statements here; an opening's payments run beside its orders.
ORDERS = cast(Table, Order.__table__)
_O = ORDERS.c
ORDER_COLUMNS = (_O.id, _O.user_id, _O.product_id, _O.quantity, _O.unit_price, _O.amount,
                 _O.status, _O.expires_at, _O.created_at)
ORDER_BY_ID = select(*ORDER_COLUMNS).where(_O.id == bindparam("order_id"))
# A user's orders, newest first, one page past a cursor (the first page has no cursor).
_NEWEST_FIRST = (_O.created_at.desc(), _O.id.desc())
ORDERS_OF_USER = (select(*ORDER_COLUMNS).where(_O.user_id == bindparam("user_id"))
                  .order_by(*_NEWEST_FIRST).limit(bindparam("limit")))
ORDERS_OF_USER_AFTER = (
    select(*ORDER_COLUMNS)
    .where(_O.user_id == bindparam("user_id"),
           older_than(_O.created_at, _O.id))
    .order_by(*_NEWEST_FIRST).limit(bindparam("limit")))
ORDERS_OF_USER_IN_STATUS = (
    select(*ORDER_COLUMNS)
    .where(_O.user_id == bindparam("user_id"), _O.status == bindparam("status"))
    .order_by(*_NEWEST_FIRST).limit(bindparam("limit")))
ORDERS_OF_USER_IN_STATUS_AFTER = (
    select(*ORDER_COLUMNS)
    .where(_O.user_id == bindparam("user_id"), _O.status == bindparam("status"),
           older_than(_O.created_at, _O.id))
    .order_by(*_NEWEST_FIRST).limit(bindparam("limit")))


@dataclass(frozen=True)
class NewOrder:
    """An order to insert (its units are held at stock_service already), with the
    Idempotency-Key that made it, if any."""

    order: OrderOut
    idempotency_key: str | None = None
    idempotency_fingerprint: str | None = None


@dataclass(frozen=True)
class Settling:
    """An order with effects still owed to other services."""

    id: int
    product_id: int
    status: OrderStatus
    stock_effect: StockEffect | None
    payment_effect: PaymentEffect | None


@dataclass(frozen=True)
class DueKey:
    """Where an order stands in the deadline order: the expiry round pages on from it."""

    expires_at: datetime
    order_id: int


@dataclass(frozen=True)
class DueOrder:
    """An unpaid order past its deadline; `leased`: a payment began and its lease ran out."""

    key: DueKey
    leased: bool

    @property
    def order_id(self) -> int:
        return self.key.order_id


def _order(row: Any) -> OrderOut:
    return OrderOut.model_validate(dict(row))


class OrderReads:
    """Reads outside any transaction: the public GETs, and what an order owes (effects)."""

    def __init__(self, reads: ReadSession) -> None:
        self.reads = reads

    async def order(self, order_id: int) -> OrderOut | None:
        row = (await self.reads.execute(ORDER_BY_ID, {"order_id": order_id})).first()
        return _order(row) if row else None

    async def settling(self, order_id: int) -> Settling | None:
        row = (await self.reads.execute(SETTLING, {"p_order": order_id})).first()
        return Settling(**row) if row else None

    async def page(self, user_id: int, *, status: OrderStatus | None, limit: int,
                   after: Key | None) -> list[OrderOut]:
        parameters: dict[str, Any] = {"user_id": user_id, "limit": limit, **key_params(after)}
        if status is not None:
            parameters["status"] = status
        statement = {
            (False, False): ORDERS_OF_USER, (False, True): ORDERS_OF_USER_AFTER,
            (True, False): ORDERS_OF_USER_IN_STATUS, (True, True): ORDERS_OF_USER_IN_STATUS_AFTER,
        }[(status is not None, after is not None)]
        return [_order(row) for row in (await self.reads.execute(statement, parameters)).all()]


INSERT_ORDER = insert(ORDERS)
_NO_LEASE_RUNNING = or_(_O.lease_until.is_(None), _O.lease_until < bindparam("p_now"))
LEASE = (update(ORDERS)
         .where(_O.id == bindparam("p_order"), _O.user_id == bindparam("p_user"),
                _O.status == "pending_payment", _O.expires_at > bindparam("p_now"),
                _NO_LEASE_RUNNING)
         .values(lease_token=bindparam("p_token"), lease_until=bindparam("p_until"),
                 updated_at=bindparam("p_updated")))
# A payment's outcome, taken only from the payment holding the order's lease.
_PAYMENT_DECIDED = (update(ORDERS)
                    .where(_O.id == bindparam("p_order"), _O.status == "pending_payment",
                           _O.lease_token == bindparam("p_token")))
MARK_PAID = _PAYMENT_DECIDED.values(
    status="paid", payment_id=bindparam("p_payment"), lease_until=None, stock_effect="commit",
    updated_at=bindparam("p_updated"))
MARK_PAYMENT_FAILED = _PAYMENT_DECIDED.values(
    status="payment_failed", payment_id=bindparam("p_payment"), lease_until=None,
    stock_effect="release", updated_at=bindparam("p_updated"))
EXPIRE = (update(ORDERS)
          .where(_O.id == bindparam("p_order"), _O.status == "pending_payment",
                 _O.expires_at <= bindparam("p_now"), _NO_LEASE_RUNNING)
          .values(status="expired", stock_effect="release", updated_at=bindparam("p_updated")))
_CANCELLED = update(ORDERS).where(_O.id == bindparam("p_order"), _O.user_id == bindparam("p_user"))
CANCEL_UNPAID = (_CANCELLED.where(_O.status == "pending_payment")
                 .values(status="cancelled", stock_effect="release",
                         updated_at=bindparam("p_updated")))
CANCEL_PAID = (_CANCELLED.where(_O.status == "paid")
               .values(status="refunded", stock_effect="release", payment_effect="refund",
                       updated_at=bindparam("p_updated")))
REFUND_UNSOLD = (update(ORDERS).where(_O.id == bindparam("p_order"), _O.status == "paid")
                 .values(status="refunded", stock_effect=None, payment_effect="refund",
                         updated_at=bindparam("p_updated")))
PAID_BY = select(_O.payment_id).where(_O.id == bindparam("p_order"))
SETTLING = (select(_O.id, _O.product_id, _O.status, _O.stock_effect, _O.payment_effect)
            .where(_O.id == bindparam("p_order")))
# An effect is cleared only if it is still the one carried out (not a newer one).
STOCK_EFFECT_DONE = (update(ORDERS)
                     .where(_O.id == bindparam("p_order"), _O.stock_effect == bindparam("p_effect"))
                     .values(stock_effect=None))
PAYMENT_EFFECT_DONE = (update(ORDERS)
                       .where(_O.id == bindparam("p_order"),
                              _O.payment_effect == bindparam("p_effect"))
                       .values(payment_effect=None))


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, orders: list[NewOrder]) -> None:
        """One statement for them all. Raises IntegrityError (1062) when a user's
        Idempotency-Key already made an order (and then none of them is inserted)."""
        await self.session.execute(INSERT_ORDER, [{
            "id": new.order.id, "user_id": new.order.user_id, "product_id": new.order.product_id,
            "quantity": new.order.quantity, "unit_price": new.order.unit_price,
            "amount": new.order.amount, "status": new.order.status,
            "expires_at": new.order.expires_at, "created_at": new.order.created_at,
            "updated_at": new.order.created_at, "idempotency_key": new.idempotency_key,
            "idempotency_fingerprint": new.idempotency_fingerprint} for new in orders])

    async def take_id_block(self, name: str, size: int) -> int:
        """The first id of a block of `size` ids of the sequence `name`, taken for good.

        The UPDATE comes first: it locks the sequence's row exclusively at once, so replicas
        taking blocks together queue on it. (An INSERT IGNORE first takes a shared lock on the
        row it finds, and two of those each waiting to upgrade are a deadlock.) Only a sequence
        never used before is inserted, and then updated."""
        # LAST_INSERT_ID(expr) hands the new value back on this connection, no SELECT race.
        take = (update(IdBlock).where(IdBlock.name == name)
                .values(next_id=func.last_insert_id(IdBlock.next_id + size)))
        if not await execute_counted(self.session, take):
            await self.session.execute(insert(IdBlock).values(name=name, next_id=1)
                                       .prefix_with("IGNORE"))
            await self.session.execute(take)
        end = (await self.session.execute(select(func.last_insert_id()))).scalar_one()
        return int(end) - size

    async def by_idempotency_key(self, user_id: int, key: str) -> tuple[OrderOut, str] | None:
        row = (await self.session.execute(
            select(*ORDER_COLUMNS, Order.idempotency_fingerprint)
            .where(Order.user_id == user_id, Order.idempotency_key == key))).mappings().first()
        if row is None:
            return None
        values = dict(row)
        return _order({k: v for k, v in values.items() if k != "idempotency_fingerprint"}), \
            str(values["idempotency_fingerprint"])

    async def unpaid_order(self, user_id: int, product_id: int) -> tuple[OrderOut, str | None] | None:
        """The user's unpaid order of the product (at most one: UNPAID_ORDER_KEY), and the
        Idempotency-Key that made it."""
        row = (await self.session.execute(
            select(*ORDER_COLUMNS, Order.idempotency_key)
            .where(Order.user_id == user_id, Order.unpaid_product_id == product_id)
        )).mappings().first()
        if row is None:
            return None
        values = dict(row)
        key = values.pop("idempotency_key")
        return _order(values), key

    async def order(self, order_id: int) -> OrderOut | None:
        row = (await self.session.execute(ORDER_BY_ID, {"order_id": order_id})).mappings().first()
        return _order(row) if row else None

    async def existing_ids(self, order_ids: list[int]) -> set[int]:
        if not order_ids:
            return set()
        return set((await self.session.execute(
            select(Order.id).where(Order.id.in_(order_ids)))).scalars())

    async def _move(self, statement: Update, **parameters: Any) -> bool:
        """One of the transitions above, on one order: whether it matched."""
        return bool(await execute_counted(self.session, statement,
                                          {**parameters, "p_updated": utcnow()}))

    # Payment

    async def lease_for_payment(self, order_id: int, user_id: int, *, token: str,
                                until: datetime, now: datetime) -> bool:
        """Only a pending order of this user, not past its deadline, with no payment in flight."""
        return await self._move(LEASE, p_order=order_id, p_user=user_id, p_now=now,
                                p_token=token, p_until=until)

    async def paid_by(self, order_id: int) -> int | None:
        """The payment an order was paid with (None while unpaid)."""
        return await self.session.scalar(PAID_BY, {"p_order": order_id})

    async def mark_paid(self, order_id: int, *, token: str, payment_id: int) -> bool:
        return await self._move(MARK_PAID, p_order=order_id, p_token=token,
                                p_payment=payment_id)

    async def mark_payment_failed(self, order_id: int, *, token: str, payment_id: int) -> bool:
        return await self._move(MARK_PAYMENT_FAILED, p_order=order_id, p_token=token,
                                p_payment=payment_id)

    # Expiry and cancel

    async def expire(self, order_id: int, *, now: datetime) -> bool:
        """Past its deadline and with no payment lease running."""
        return await self._move(EXPIRE, p_order=order_id, p_now=now)

    async def cancel(self, order_id: int, user_id: int, *, from_status: OrderStatus) -> bool:
        """pending_payment -> cancelled, paid -> refunded; the units come back either way."""
        return await self._move(CANCEL_UNPAID if from_status == "pending_payment" else CANCEL_PAID,
                                p_order=order_id, p_user=user_id)

    async def refund_unsold(self, order_id: int) -> bool:
        """A paid order whose units were already gone (its hold released under it): the charge
        goes back rather than the order keeping money for nothing."""
        return await self._move(REFUND_UNSOLD, p_order=order_id)

    async def past_deadline(self, *, now: datetime, after: DueKey | None = None,
                            limit: int) -> list[DueOrder]:
        """Unpaid orders past their deadline with no payment lease running, in deadline order,
        from just past `after` (the last of the previous page)."""
        query = (select(Order.id, Order.expires_at, Order.lease_token)
                 .where(Order.status == "pending_payment", Order.expires_at <= now,
                        or_(Order.lease_until.is_(None), Order.lease_until < now)))
        if after is not None:
            query = query.where(or_(Order.expires_at > after.expires_at,
                                    and_(Order.expires_at == after.expires_at,
                                         Order.id > after.order_id)))
        rows = await self.session.execute(
            query.order_by(Order.expires_at, Order.id).limit(limit))
        return [DueOrder(DueKey(expires_at, int(order_id)), leased=token is not None)
                for order_id, expires_at, token in rows]

    # Effects owed to other services

    async def settling(self, order_id: int) -> Settling | None:
        row = (await self.session.execute(SETTLING, {"p_order": order_id})).first()
        return Settling(*row) if row else None

    async def unsettled(self, *, older_than: datetime, limit: int) -> list[int]:
        rows = await self.session.execute(
            select(Order.id)
            .where(or_(Order.stock_effect.is_not(None), Order.payment_effect.is_not(None)),
                   Order.updated_at < older_than)
            .limit(limit))
        return [int(order_id) for order_id in rows.scalars()]

    async def effect_done(self, order_id: int, *, stock_effect: StockEffect | None = None,
                          payment_effect: PaymentEffect | None = None) -> None:
        """Clears the effect if it is still the one that was carried out (not a newer one)."""
        if stock_effect is not None:
            await self.session.execute(STOCK_EFFECT_DONE,
                                       {"p_order": order_id, "p_effect": stock_effect})
        if payment_effect is not None:
            await self.session.execute(PAYMENT_EFFECT_DONE,
                                       {"p_order": order_id, "p_effect": payment_effect})
