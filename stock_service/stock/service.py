"""The rules of stock: holds taken in Redis and confirmed in the ledger, released and committed
in the ledger first; products registered and changed; the public view.

A reserve is one Lua call, and only when Redis accepts it one MySQL transaction that records
the hold and moves the counts only if the product still has the units and the user stays within
the limit (shared with the product's other holds arriving meanwhile: see hold_writer). A
refusal from Redis costs no MySQL work at all. If MySQL refuses what Redis accepted, Redis was
wrong: the hold is taken back, the caller hears the ledger's answer, and the product's live
state is rebuilt.

Releases and commits change the ledger first (the truth), then Redis. If Redis cannot be told,
it keeps fewer units available than the ledger (never more) until the reconciler repairs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import utcnow
from shared.errors import DatabaseUnavailable, InvalidState, ProblemError, ValidationFailed
from shared.internal.stock import Hold, HoldPage, StockEntry, StockRegistration
from shared.reads import ReadSession
from shared.sale_window import sale_state, sale_state_at_ms
from shared.sold_out import SoldOutMemory
from stock_service.stock.errors import (
    HoldNotFound,
    HoldReleased,
    NotTheSeller,
    ProductNotFound,
    PurchaseLimitExceeded,
    SaleClosed,
    SaleNotOpen,
    SaleStarted,
    SoldOut,
    StockRebuilding,
)
from stock_service.stock.hold_writer import (
    AlreadyInLedger,
    HoldWriter,
    LedgerRefused,
    WriterStopped,
)
from stock_service.stock.rebuild import LiveState, settings_fields
from stock_service.stock.repository import (
    LedgerHold,
    LedgerProduct,
    LedgerReads,
    LedgerRepository,
    NewHold,
)
from stock_service.stock.schemas import StockLevel
from stock_service.stock.scripts import (
    LIMIT_EXCEEDED,
    NOT_FOUND,
    SALE_CLOSED,
    SALE_NOT_OPEN,
    SOLD_OUT,
    HoldRecord,
    LiveView,
    StockScripts,
)

logger = logging.getLogger("stock_service.stock")

REFUSAL_ERRORS: dict[str, type[ProblemError]] = {
    NOT_FOUND: ProductNotFound,
    SALE_NOT_OPEN: SaleNotOpen,
    SALE_CLOSED: SaleClosed,
    LIMIT_EXCEEDED: PurchaseLimitExceeded,
    SOLD_OUT: SoldOut,
}


def _from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(milliseconds=ms)


def hold_body(hold: LedgerHold, *, state: str | None = None) -> Hold:
    return Hold(order_id=hold.order_id, product_id=hold.product_id, user_id=hold.user_id,
                quantity=hold.quantity, unit_price=hold.unit_price,
                state=state or hold.state,
                expires_at=hold.expires_at, created_at=hold.created_at)


def entry_body(product: LedgerProduct, now: datetime) -> StockEntry:
    return StockEntry(
        product_id=product.product_id, seller_id=product.seller_id, price=product.price,
        total=product.total, held=product.held, sold=product.sold, remaining=product.remaining,
        sale_opens_at=product.sale_opens_at, sale_closes_at=product.sale_closes_at,
        limit_per_user=product.limit_per_user,
        sale_state=sale_state(product.sale_opens_at, product.sale_closes_at, now),
        deleted=product.deleted_at is not None)


class StockService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], reads: ReadSession,
                 scripts: StockScripts, live: LiveState, hold_ttl: timedelta,
                 sold_out_memory: float = 0.0, view_memory: float = 0.0) -> None:
        self.sessions = sessions
        self.reads = LedgerReads(reads)
        self.scripts = scripts
        self.holds = HoldWriter(sessions)
        self.live = live
        self.hold_ttl = hold_ttl
        self.sold_out = SoldOutMemory(sold_out_memory)
        self.view_memory = view_memory
        self._views: dict[int, tuple[LiveView, float]] = {}
        # Counts the changes made through this process: a view read while one was made may
        # predate it, and is not remembered.
        self._changes = 0
        live.on_change = self._forget_view

    # Holds

    async def reserve(self, product_id: int, order_id: int, *, user_id: int, quantity: int,
                      expires_at: datetime | None = None) -> Hold:
        if self.sold_out.refuses(product_id, quantity):
            raise SoldOut()
        outcome = await self.scripts.reserve(product_id, order_id, user_id, quantity)
        if outcome.word == "held":
            self.sold_out.forget(product_id)
            self._forget_view(product_id)
            assert outcome.hold is not None
            assert outcome.price is not None
            return await self._confirm(product_id, order_id, outcome.hold, outcome.price,
                                       expires_at or utcnow() + self.hold_ttl, fresh=True)
        if outcome.word == "replay":
            assert outcome.hold is not None
            return await self._replayed(product_id, order_id, outcome.hold,
                                        expires_at or utcnow() + self.hold_ttl)
        if outcome.word in REFUSAL_ERRORS:
            if outcome.word == SOLD_OUT:
                self.sold_out.remember(product_id, quantity)
            raise REFUSAL_ERRORS[outcome.word]()
        if outcome.word == "missing":
            await self._state_missing(product_id)
        raise StockRebuilding()

    async def _confirm(self, product_id: int, order_id: int, record: HoldRecord, price: int,
                       expires_at: datetime, *, fresh: bool) -> Hold:
        created_at = _from_ms(record.created_ms)
        try:
            await self.holds.write(NewHold(
                order_id=order_id, product_id=product_id, user_id=record.user_id,
                quantity=record.quantity, unit_price=price, expires_at=expires_at,
                created_at=created_at))
        except LedgerRefused as refused:
            # Redis said yes, the ledger no: Redis was wrong (an older snapshot, say).
            logger.warning("ledger refused a hold Redis accepted",
                           extra={"product_id": product_id, "order_id": order_id,
                                  "code": refused.code})
            if refused.code == SOLD_OUT:
                self.sold_out.remember(product_id, record.quantity)
            await self._unreserve(product_id, order_id, remember=refused.code)
            self.live.request_rebuild(product_id)
            raise REFUSAL_ERRORS[refused.code]() from None
        except AlreadyInLedger:
            return await self._as_in_ledger(product_id, order_id, fresh=fresh)
        except (SQLAlchemyError, WriterStopped) as error:
            if fresh:
                # Nothing is decided: give the units back so a retry can take them again.
                await self._unreserve(product_id, order_id)
            raise DatabaseUnavailable() from error
        return Hold(order_id=order_id, product_id=product_id, user_id=record.user_id,
                    quantity=record.quantity, unit_price=price, state="held",
                    expires_at=expires_at, created_at=created_at)

    async def _as_in_ledger(self, product_id: int, order_id: int, *, fresh: bool) -> Hold:
        """The ledger already has this order's hold: its answer is the first one."""
        existing = await self.reads.hold(product_id, order_id)
        if fresh:
            # Redis had forgotten the hold (or the order's hold is for another product) and
            # just took units a second time: they go back before any answer.
            await self._unreserve(product_id, order_id)
            self.live.request_rebuild(product_id)
        if existing is None:
            raise HoldNotFound()  # the order's hold is for another product
        return hold_body(existing)

    async def _replayed(self, product_id: int, order_id: int, record: HoldRecord,
                        expires_at: datetime) -> Hold:
        existing = await self.reads.hold(product_id, order_id)
        if existing is not None:
            return hold_body(existing)
        if record.state == "held":
            # Redis took the units but the ledger never heard (a crash, or a confirm still in
            # flight): confirm now; if the other confirm wins, the ledger says so.
            product = await self.reads.product(product_id)
            if product is None:
                raise ProductNotFound()
            return await self._confirm(product_id, order_id, record, product.price,
                                       expires_at, fresh=False)
        raise HoldNotFound()

    async def _unreserve(self, product_id: int, order_id: int, *, remember: str = "") -> None:
        await self.scripts.unreserve(product_id, order_id, remember=remember)
        self._forget_view(product_id)

    async def _state_missing(self, product_id: int) -> None:
        """Redis has nothing for the product: flushed (rebuild it) or never registered."""
        if not await self.live.epoch_present():
            self.live.request_full_rebuild()
            raise StockRebuilding()
        if await self.reads.product(product_id) is None:
            raise ProductNotFound()
        self.live.request_rebuild(product_id)
        raise StockRebuilding()

    async def release(self, product_id: int, order_id: int) -> Hold:
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
            hold = await ledger.hold_for_update(product_id, order_id)
            if hold is None:
                raise HoldNotFound()
            if hold.state != "released":
                await ledger.move_holds([hold], to="released")
        await self._tell_redis(self.scripts.release, product_id, order_id)
        self.sold_out.forget(product_id)
        return hold_body(hold, state="released")

    async def commit(self, product_id: int, order_id: int) -> Hold:
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
            hold = await ledger.hold_for_update(product_id, order_id)
            if hold is None:
                raise HoldNotFound()
            if hold.state == "released":
                raise HoldReleased()
            if hold.state == "held":
                await ledger.move_holds([hold], to="committed")
        await self._tell_redis(self.scripts.commit, product_id, order_id)
        return hold_body(hold, state="committed")

    async def _tell_redis(self, script: Callable[[int, int], Awaitable[object]],
                          product_id: int, order_id: int) -> None:
        try:
            await script(product_id, order_id)
            self._forget_view(product_id)
        except RedisError:
            # The ledger moved; Redis keeps fewer units available than it until reconciled.
            logger.warning("Redis not told of a ledger change; the reconciler will repair it",
                           extra={"product_id": product_id, "order_id": order_id})

    async def get_hold(self, product_id: int, order_id: int) -> Hold:
        hold = await self.reads.hold(product_id, order_id)
        if hold is None:
            raise HoldNotFound()
        return hold_body(hold)

    async def held_holds(self, *, created_before: datetime, after_order_id: int,
                         limit: int) -> HoldPage:
        """Holds still waiting for their order to be paid or to give up: what order_service's
        reconciler checks against its orders, to release the ones no order will ever settle."""
        async with self.sessions() as session:
            holds = await LedgerRepository(session).held_holds(
                created_before=created_before, after_order_id=after_order_id, limit=limit + 1)
        page = holds[:limit]
        return HoldPage(items=[hold_body(hold) for hold in page],
                        next_after=page[-1].order_id if len(holds) > limit else None)

    async def release_expired(self, *, grace: timedelta, batch: int = 100) -> int:
        """Unpaid holds past their expiry give their units back; safe with several replicas
        (rows another one is reaping are skipped). Returns how many were released."""
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
            expired = await ledger.move_holds(
                await ledger.expired_holds(before=utcnow() - grace, limit=batch), to="released")
        for hold in expired:
            await self._tell_redis(self.scripts.release, hold.product_id, hold.order_id)
        return len(expired)

    # Products

    async def register(self, product_id: int, registration: StockRegistration) -> StockEntry:
        """Creates the product's stock, or applies a change of its registration. Idempotent:
        the same registration sent twice is one change."""
        now = utcnow()
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
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
                await ledger.update_product(
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
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
            product = await ledger.product(product_id, lock=True)
            if product is None:
                return
            if product.deleted_at is None:
                await ledger.update_product(product_id, deleted_at=utcnow())
            updated = await ledger.product(product_id)
        assert updated is not None
        await self._apply_settings(updated)

    async def _apply_settings(self, product: LedgerProduct) -> None:
        try:
            applied = await self.scripts.configure(product.product_id, settings_fields(product))
            if applied is None:
                await self.live.rebuild_or_wait(product.product_id)
            self._forget_view(product.product_id)
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
        async with self.sessions() as session, session.begin():
            ledger = LedgerRepository(session)
            product = await ledger.product(product_id, lock=True)
            if product is None or product.deleted_at is not None:
                raise ProductNotFound()
            if product.seller_id != seller_id:
                raise NotTheSeller()
            if sale_state(product.sale_opens_at, product.sale_closes_at, now) != "scheduled":
                raise SaleStarted()
            if total < product.held + product.sold:
                raise InvalidState("Units are already held or sold: the total cannot go below them.")
            await ledger.update_product(product_id, total=total)
            updated = await ledger.product(product_id)
        assert updated is not None
        await self._apply_settings(updated)
        return StockLevel(product_id=product_id, remaining=updated.remaining,
                          sale_state=sale_state(updated.sale_opens_at, updated.sale_closes_at,
                                                now))

    async def public_level(self, product_id: int) -> StockLevel:
        """Served from Redis alone: the remaining count and the state by Redis's clock."""
        view = await self._live_view(product_id)
        if view.rebuilding:
            raise StockRebuilding()
        if view.active is None:
            if not await self.live.epoch_present():
                self.live.request_full_rebuild()
                raise StockRebuilding()
            raise ProductNotFound()
        if not view.active:
            raise ProductNotFound()
        return _level(product_id, view)

    def remembered_level(self, product_id: int) -> StockLevel | None:
        """public_level's answer without a Redis read, when this process read the product's
        view less than `view_memory` ago and it shows a product on sale; else None (ask
        public_level). For the layer in front of the router (fast_answers.py)."""
        remembered = self._views.get(product_id)
        if remembered is None:
            return None
        view, read_at = remembered
        elapsed = time.monotonic() - read_at
        if elapsed >= self.view_memory or view.rebuilding or not view.active:
            return None
        return _level(product_id, replace(view, now_ms=view.now_ms + int(elapsed * 1000)))

    def _forget_view(self, product_id: int) -> None:
        """A change made through this process is seen by its next read; other processes see it
        within `view_memory`."""
        self._changes += 1
        self._views.pop(product_id, None)

    async def _live_view(self, product_id: int) -> LiveView:
        """The product's live view, read from Redis at most once per `view_memory` here. Its
        clock moves on with ours in between, so the sale still opens at its exact millisecond
        (by Redis's clock as last read)."""
        remembered = self._views.get(product_id)
        now = time.monotonic()
        if remembered is not None and now - remembered[1] < self.view_memory:
            view, read_at = remembered
            return replace(view, now_ms=view.now_ms + int((now - read_at) * 1000))
        changes = self._changes
        view = await self.scripts.view(product_id)
        if self.view_memory > 0 and changes == self._changes:
            if len(self._views) > 10_000:
                self._views.clear()
            self._views[product_id] = (view, now)
        return view


def _level(product_id: int, view: LiveView) -> StockLevel:
    return StockLevel(product_id=product_id, remaining=view.remaining,
                      sale_state=sale_state_at_ms(view.opens_ms, view.closes_ms, view.now_ms))


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
