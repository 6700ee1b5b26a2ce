"""An order after its creation: read, cancelled, leased to a payment, paid, failed (expired:
orders/expiry.py).

Each transition is one conditional UPDATE (orders/repository.py) in a transaction of its own,
so a race between pay, cancel and expire ends one way only. What a transition owes stock_service
or payment_service is written with it and carried out by orders/effects.py.
"""

from __future__ import annotations

import os
from datetime import timedelta

from order_service.orders.effects import OrderEffects
from order_service.orders.errors import OrderNotCancellable, OrderNotFound, OrderNotPayable
from order_service.orders.repository import OrderReads, OrderRepository
from order_service.orders.schemas import OrderOut
from shared.clock import utcnow
from shared.db import Transactions
from shared.internal.orders import OrderState, OrderStatus, PaymentLease
from shared.pagination import Key
from shared.reads import ReadSession

# What a cancel makes of an order, by its state; any other state cannot be cancelled.
CANCELLED_AS: dict[OrderStatus, OrderStatus] = {"pending_payment": "cancelled",
                                               "paid": "refunded"}


class OrderTransitions:
    def __init__(self, *, transactions: Transactions[OrderRepository], reads: ReadSession,
                 effects: OrderEffects, lease: timedelta) -> None:
        self.transactions = transactions
        self.reads = OrderReads(reads)
        self.effects = effects
        self.lease = lease

    # Reading

    async def get(self, user_id: int, order_id: int) -> OrderOut:
        order = await self.reads.order(order_id)
        if order is None or order.user_id != user_id:
            raise OrderNotFound()
        return order

    async def page(self, user_id: int, *, status: OrderStatus | None, limit: int,
                   after: Key | None) -> list[OrderOut]:
        return await self.reads.page(user_id, status=status, limit=limit, after=after)

    # Cancelling

    async def cancel(self, user_id: int, order_id: int) -> OrderOut:
        async with self.transactions.write() as orders:
            order = await orders.order(order_id)
            if order is None or order.user_id != user_id:
                raise OrderNotFound()
            if order.status in CANCELLED_AS and await orders.cancel(
                    order_id, user_id, from_status=order.status):
                cancelled = order.model_copy(update={"status": CANCELLED_AS[order.status]})
            else:
                # Moved meanwhile (paid, expired): say what it is now.
                current = await orders.order(order_id)
                assert current is not None
                raise OrderNotCancellable(f"The order is {current.status}.")
        await self.effects.settle_before_answering(order_id)
        return cancelled

    # The payment's side (internal API)

    async def lease_for_payment(self, order_id: int, user_id: int) -> PaymentLease:
        now = utcnow()
        token = os.urandom(16).hex()
        until = now + self.lease
        async with self.transactions.write() as orders:
            leased = await orders.lease_for_payment(order_id, user_id, token=token, until=until,
                                                    now=now)
            order = await orders.order(order_id)
        if leased:
            assert order is not None
            return PaymentLease(order_id=order_id, user_id=user_id, amount=order.amount,
                                lease_token=token, lease_until=until)
        if order is None or order.user_id != user_id:
            raise OrderNotFound()
        if order.status != "pending_payment":
            raise OrderNotPayable(f"The order is {order.status}.")
        if order.expires_at <= now:
            raise OrderNotPayable("The order's time to pay has run out.")
        raise OrderNotPayable("A payment for this order is already in progress.")

    async def mark_paid(self, order_id: int, *, payment_id: int, token: str) -> OrderState:
        async with self.transactions.write() as orders:
            moved = await orders.mark_paid(order_id, token=token, payment_id=payment_id)
            # Moved: paid now, nothing to read back. Else it was paid already (this payment is
            # answered again) or it cannot be paid: the order says which.
            order = None if moved else await orders.order(order_id)
            paid_by = payment_id if moved else await orders.paid_by(order_id)
        if not moved:
            if order is None:
                raise OrderNotFound()
            # Only the payment that paid it is answered "paid" again: another payment's charge
            # must be voided, never kept beside the first (a double charge).
            if order.status != "paid" or paid_by != payment_id:
                raise OrderNotPayable(f"The order is {order.status}"
                                      + (" by another payment." if order.status == "paid"
                                         else "."))
        self.effects.settle_soon(order_id)
        return OrderState(order_id=order_id, status="paid")

    async def mark_payment_failed(self, order_id: int, *, payment_id: int,
                                  token: str) -> OrderState:
        async with self.transactions.write() as orders:
            await orders.mark_payment_failed(order_id, token=token, payment_id=payment_id)
            order = await orders.order(order_id)
        if order is None:
            raise OrderNotFound()
        await self.effects.settle_before_answering(order_id)
        return OrderState(order_id=order_id, status=order.status)
