"""The rules of orders: creation with a hold, the payment lease, pay / fail / cancel / expire as
one conditional transition each, and the effects those transitions owe stock_service and
payment_service.

The order path: an id is made first (so the reserve is keyed by it), the units are reserved at
stock_service, then the order is inserted (with the product's other new orders of that moment:
orders/writer.py). If the insert fails the hold
is released; if the process dies in between, the orphan reconciler releases the hold (a hold
with no order after `orphan_after`). A refusal (sold_out, ...) costs one call to stock_service
(one Lua call there) and no MySQL work here; a product refused as sold out is remembered for
`sold_out_memory` so the crowd behind it is answered without even that call, and at most
`reserves_in_flight` reserves of one product are in flight at once, so a crowd that arrives all
at once waits for the first answer instead of all asking before it comes.

Transitions write what they owe other services on the order row (stock_effect,
payment_effect) in the same transaction; the effect is carried out right after the commit and,
if that fails, retried by a loop until it lands. Every effect is idempotent at the other end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_service.clients import PaymentsClient, StockClient
from order_service.orders.errors import (
    OrderNotCancellable,
    OrderNotFound,
    OrderNotPayable,
    StockUnavailable,
    TooManyWaiting,
)
from order_service.orders.ids import OrderIds
from order_service.orders.repository import (
    DUPLICATE_ENTRY,
    NewOrder,
    OrderReads,
    OrderRepository,
    OrderRow,
)
from order_service.orders.schemas import OrderCreate, OrderOut
from order_service.orders.writer import OrderWriter
from shared.clock import utcnow
from shared.errors import DatabaseUnavailable
from shared.group_commit import WriterStopped
from shared.http import ServiceCallFailed
from shared.idempotency import (
    Claim,
    IdempotencyKeyReused,
    IdempotencyKeys,
    StoredAnswer,
)
from shared.internal.orders import OrderState, PaymentLease
from shared.internal.stock import Hold, SoldOut
from shared.pagination import Key
from shared.reads import ReadSession
from shared.sold_out import InFlightLimit, SlotTimeout, SoldOutMemory, Verdict

logger = logging.getLogger("order_service.orders")


@dataclass(frozen=True)
class Timing:
    payment_ttl: timedelta
    lease: timedelta
    sold_out_memory: float
    orphan_after: timedelta
    reserves_in_flight: int = 64
    reserve_wait_seconds: float = 5.0


def order_out(order: OrderRow) -> OrderOut:
    return OrderOut.model_validate(order, from_attributes=True)


class OrdersService:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], reads: ReadSession,
                 stock: StockClient, payments: PaymentsClient, ids: OrderIds,
                 keys: IdempotencyKeys, timing: Timing, fault_point: str | None = None) -> None:
        self.sessions = sessions
        self.reads = OrderReads(reads)
        self.stock = stock
        self.payments = payments
        self.ids = ids
        self.keys = keys
        self.timing = timing
        self.fault_point = fault_point
        self.sold_out = SoldOutMemory(timing.sold_out_memory)
        self.reserving = InFlightLimit(timing.reserves_in_flight,
                                       wait_seconds=timing.reserve_wait_seconds)
        self.writer = OrderWriter(sessions)
        self._effects: set[asyncio.Task[None]] = set()

    # Creating

    async def create(self, user_id: int, request: OrderCreate,
                     idempotency_key: str | None) -> StoredAnswer:
        """201 and the order, or the refusal; with a key, at most once and the same again."""
        return await self.keys.once(
            user_id, idempotency_key, request,
            lambda claim: self._create(user_id, request, claim))

    async def _create(self, user_id: int, request: OrderCreate, claim: Claim | None) -> OrderOut:
        verdict = self.sold_out.verdict(request.product_id, request.quantity)
        if verdict is Verdict.REFUSE:
            raise SoldOut()
        hold: Hold | None = None
        try:
            async with self.reserving.slot(request.product_id):
                # Learnt while this one waited its turn; never for the order chosen to ask, and
                # never remembered again (only stock_service's answer re-arms the memory).
                if verdict is Verdict.ASK or not self.sold_out.still_refuses(
                        request.product_id, request.quantity):
                    order_id = await self.ids.next()
                    created_at = utcnow()
                    expires_at = created_at + self.timing.payment_ttl
                    hold = await self.stock.reserve(
                        product_id=request.product_id, order_id=order_id, user_id=user_id,
                        quantity=request.quantity, expires_at=expires_at)
        except SoldOut:
            self.sold_out.remember(request.product_id, request.quantity)
            raise
        except SlotTimeout:
            raise TooManyWaiting() from None
        if hold is None:
            raise SoldOut()
        self.sold_out.forget(request.product_id)
        if self.fault_point == "after_reserve":
            # Tests only (settings refuse it elsewhere): die holding units no order records.
            logger.error("fault injected: exiting", extra={"point": self.fault_point})
            os._exit(17)
        try:
            await self.writer.write(NewOrder(
                order_id=order_id, user_id=user_id, product_id=request.product_id,
                quantity=request.quantity, unit_price=hold.unit_price, expires_at=expires_at,
                created_at=created_at, idempotency_key=claim.key if claim else None,
                idempotency_fingerprint=claim.fingerprint if claim else None))
            if self.fault_point == "insert_answer_lost":
                raise OperationalError("COMMIT", {}, Exception(2013, "Lost connection"))
        except IntegrityError as error:
            # Refused by the database: nothing of it was written.
            await self._release_quietly(request.product_id, order_id)
            if claim is not None and getattr(error.orig, "args", (None,))[0] == DUPLICATE_ENTRY:
                return await self._first_order_of(claim)
            raise
        except (SQLAlchemyError, OSError, WriterStopped) as error:
            # The commit may have landed before the error (a connection lost during COMMIT):
            # the units go back only once the order is known not to exist.
            if not await self._written_or_released(request.product_id, order_id):
                raise DatabaseUnavailable() from error
        # Not caught: a cancelled caller (its order is still written, shielded in the writer;
        # if the process stops first, the orphan reconciler releases the hold).
        return OrderOut(id=order_id, user_id=user_id, product_id=request.product_id,
                        quantity=request.quantity, unit_price=hold.unit_price,
                        amount=hold.unit_price * request.quantity, status="pending_payment",
                        expires_at=expires_at, created_at=created_at)

    async def _first_order_of(self, claim: Claim) -> OrderOut:
        """The key made an order before (Redis had lost the key): that order is the answer."""
        async with self.sessions() as session:
            found = await OrderRepository(session).by_idempotency_key(claim.user_id, claim.key)
        if found is None:
            raise DatabaseUnavailable()
        order, first_fingerprint = found
        if first_fingerprint != claim.fingerprint:
            raise IdempotencyKeyReused()
        return order_out(order)

    async def _written_or_released(self, product_id: int, order_id: int) -> bool:
        """After a failed insert: True if the order was written after all; else its hold is
        released (now, or by the orphan reconciler when the database cannot be asked)."""
        try:
            async with self.sessions() as session:
                written = bool(await OrderRepository(session).existing_ids([order_id]))
        except (SQLAlchemyError, OSError):
            return False
        if not written:
            await self._release_quietly(product_id, order_id)
        return written

    async def _release_quietly(self, product_id: int, order_id: int) -> None:
        try:
            await self.stock.release(product_id=product_id, order_id=order_id)
            self.sold_out.forget(product_id)
        except StockUnavailable:
            # The orphan reconciler releases it: a hold with no order is found and given back.
            logger.warning("could not release the hold of an order not created",
                           extra={"order_id": order_id})

    # Reading

    async def get(self, user_id: int, order_id: int) -> OrderOut:
        order = await self.reads.order(order_id)
        if order is None or order.user_id != user_id:
            raise OrderNotFound()
        return order_out(order)

    async def page(self, user_id: int, *, status: str | None, limit: int,
                   after: Key | None) -> list[OrderOut]:
        return [order_out(order)
                for order in await self.reads.page(user_id, status=status, limit=limit,
                                                   after=after)]

    # Cancelling

    async def cancel(self, user_id: int, order_id: int) -> OrderOut:
        async with self.sessions() as session, session.begin():
            orders = OrderRepository(session)
            order = await orders.order(order_id)
            if order is None or order.user_id != user_id:
                raise OrderNotFound()
            if order.status not in ("pending_payment", "paid") or not await orders.cancel(
                    order_id, user_id, from_status=order.status):
                current = await orders.order(order_id)
                assert current is not None
                raise OrderNotCancellable(f"The order is {current.status}.")
            cancelled = await orders.order(order_id)
        assert cancelled is not None
        await self._settle_before_answering(order_id)
        return order_out(cancelled)

    # The payment's side (internal API)

    async def lease_for_payment(self, order_id: int, user_id: int) -> PaymentLease:
        now = utcnow()
        token = os.urandom(16).hex()
        until = now + self.timing.lease
        async with self.sessions() as session, session.begin():
            orders = OrderRepository(session)
            if await orders.lease_for_payment(order_id, user_id, token=token, until=until,
                                              now=now):
                order = await orders.order(order_id)
                assert order is not None
                return PaymentLease(order_id=order_id, user_id=user_id, amount=order.amount,
                                    lease_token=token, lease_until=until)
            order = await orders.order(order_id)
        if order is None or order.user_id != user_id:
            raise OrderNotFound()
        if order.status != "pending_payment":
            raise OrderNotPayable(f"The order is {order.status}.")
        if order.expires_at <= now:
            raise OrderNotPayable("The order's time to pay has run out.")
        raise OrderNotPayable("A payment for this order is already in progress.")

    async def mark_paid(self, order_id: int, *, payment_id: int, token: str) -> OrderState:
        async with self.sessions() as session, session.begin():
            orders = OrderRepository(session)
            moved = await orders.mark_paid(order_id, token=token, payment_id=payment_id)
            order = await orders.order(order_id)
        if order is None:
            raise OrderNotFound()
        if not moved and order.status != "paid":
            raise OrderNotPayable(f"The order is {order.status}.")
        self._settle_soon(order_id)
        return OrderState(order_id=order_id, status="paid")

    async def mark_payment_failed(self, order_id: int, *, payment_id: int,
                                  token: str) -> OrderState:
        async with self.sessions() as session, session.begin():
            orders = OrderRepository(session)
            await orders.mark_payment_failed(order_id, token=token, payment_id=payment_id)
            order = await orders.order(order_id)
        if order is None:
            raise OrderNotFound()
        await self._settle_before_answering(order_id)
        return OrderState(order_id=order_id, status=order.status)

    # Expiry

    async def expire_due(self, *, batch: int = 200) -> int:
        """Unpaid orders past their deadline become expired (their units come back). An order
        whose payment lease ran out is asked about first: a payment that succeeded makes it
        paid instead. Each order moves once, whatever other replicas do (conditional UPDATE)."""
        now = utcnow()
        async with self.sessions() as session:
            due = await OrderRepository(session).past_deadline(now=now, limit=batch)
        moved = 0
        for order_id, token, lease_until in due:
            if lease_until is not None and lease_until >= now:
                continue  # a payment is being made right now; its outcome decides
            if token is not None and await self._paid_meanwhile(order_id):
                moved += 1
                continue
            async with self.sessions() as session, session.begin():
                expired = await OrderRepository(session).expire(order_id, now=now)
            if expired:
                moved += 1
                self._settle_soon(order_id)
        return moved

    async def _paid_meanwhile(self, order_id: int) -> bool:
        try:
            payment = await self.payments.latest_for_order(order_id)
        except ServiceCallFailed:
            return True  # cannot tell yet: not expired this round
        if payment is None:
            return False
        if payment.status == "pending":
            return True  # still being decided by payment_service
        if payment.status == "succeeded":
            await self.mark_paid(order_id, payment_id=payment.id, token=payment.lease_token)
            return True
        return False

    # Effects owed to stock_service and payment_service

    def _settle_soon(self, order_id: int) -> asyncio.Task[None]:
        task = asyncio.create_task(self._settle_logged(order_id))
        self._effects.add(task)
        task.add_done_callback(self._effects.discard)
        return task

    async def _settle_before_answering(self, order_id: int) -> None:
        """For a transition that gives units back: the answer tells the client the order is no
        longer live, so its next order must find the units there (the limit and the stock count
        live orders only). A failed release is logged and retried by `settle_overdue`; the
        shield keeps it running, and drained on shutdown, if the request is cancelled."""
        await asyncio.shield(self._settle_soon(order_id))

    async def _settle_logged(self, order_id: int) -> None:
        try:
            await self.settle(order_id)
        except Exception:
            logger.warning("effects of an order not carried out yet; retried later",
                           extra={"order_id": order_id}, exc_info=True)

    async def settle(self, order_id: int) -> None:
        async with self.sessions() as session:
            order = await OrderRepository(session).settling(order_id)
        if order is None:
            return
        if order.stock_effect == "release":
            if await self.stock.release(product_id=order.product_id, order_id=order_id):
                # Units back through this process: buyable here at once, not after the memory.
                self.sold_out.forget(order.product_id)
                await self._done(order_id, stock_effect="release")
        elif order.stock_effect == "commit":
            outcome = await self.stock.commit(product_id=order.product_id, order_id=order_id)
            if outcome == "committed":
                await self._done(order_id, stock_effect="commit")
            else:
                # Paid, but its units are gone: never both a charge and no units.
                logger.error("a paid order's hold was not there to commit; refunding",
                             extra={"order_id": order_id, "hold": outcome})
                async with self.sessions() as session, session.begin():
                    await OrderRepository(session).refund_unsold(order_id)
                    order = await OrderRepository(session).settling(order_id)
                assert order is not None
        if order.payment_effect == "refund":
            try:
                refunded = await self.payments.refund(order_id)
            except ServiceCallFailed:
                return
            if refunded:
                await self._done(order_id, payment_effect="refund")

    async def _done(self, order_id: int, *, stock_effect: str | None = None,
                    payment_effect: str | None = None) -> None:
        async with self.sessions() as session, session.begin():
            await OrderRepository(session).effect_done(order_id, stock_effect=stock_effect,
                                                       payment_effect=payment_effect)

    async def settle_overdue(self, *, batch: int = 200) -> int:
        """Effects that did not land right after their transition (a service was down)."""
        async with self.sessions() as session:
            order_ids = await OrderRepository(session).unsettled(
                older_than=utcnow() - timedelta(seconds=2), limit=batch)
        for order_id in order_ids:
            with contextlib.suppress(StockUnavailable, ServiceCallFailed):
                await self.settle(order_id)
        return len(order_ids)

    async def release_orphan_holds(self, *, page_size: int = 500) -> int:
        """Holds with no order (the process died between the reserve and the insert): given back
        once they are `orphan_after` old. Orders are inserted within seconds of their reserve,
        so an older hold without one will never get one."""
        created_before = utcnow() - self.timing.orphan_after
        released = 0
        after = 0
        while True:
            page = await self.stock.held_holds(created_before=created_before, after=after,
                                               limit=page_size)
            async with self.sessions() as session:
                known = await OrderRepository(session).existing_ids(
                    [hold.order_id for hold in page.items])
            for hold in page.items:
                if hold.order_id not in known:
                    await self.stock.release(product_id=hold.product_id, order_id=hold.order_id)
                    self.sold_out.forget(hold.product_id)
                    released += 1
            if page.next_after is None:
                return released
            after = page.next_after

    async def drain(self) -> None:
        await self.writer.drain(timeout=self.timing.reserve_wait_seconds)
        while self._effects:
            await asyncio.gather(*list(self._effects), return_exceptions=True)
