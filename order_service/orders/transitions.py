"""An order after its creation: read, cancelled, leased to a payment, paid, failed, expired.

Each transition is one conditional UPDATE (orders/repository.py) in a transaction of its own,
so a race between pay, cancel and expire ends one way only. What a transition owes stock_service
or payment_service is written with it and carried out by orders/effects.py.
"""

from __future__ import annotations

import os
from datetime import timedelta

from order_service.clients import PaymentsClient
from order_service.orders.effects import OrderEffects
from order_service.orders.errors import OrderNotCancellable, OrderNotFound, OrderNotPayable
from order_service.orders.repository import OrderReads, OrderRepository
from order_service.orders.schemas import OrderOut
from shared.clock import utcnow
from shared.db import Transactions
from shared.http import ServiceCallFailed
from shared.internal.orders import OrderState, OrderStatus, PaymentLease
from shared.pagination import Key
from shared.reads import ReadSession

# What a cancel makes of an order, by its state; any other state cannot be cancelled.
CANCELLED_AS: dict[OrderStatus, OrderStatus] = {"pending_payment": "cancelled",
                                               "paid": "refunded"}


class OrderTransitions:
    def __init__(self, *, transactions: Transactions[OrderRepository], reads: ReadSession,
                 effects: OrderEffects, payments: PaymentsClient, lease: timedelta) -> None:
        self.transactions = transactions
        self.reads = OrderReads(reads)
        self.effects = effects
        self.payments = payments
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
            order = await orders.order(order_id)
        if order is None:
            raise OrderNotFound()
        if not moved and order.status != "paid":
            raise OrderNotPayable(f"The order is {order.status}.")
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

    # Expiry

    async def expire_due(self, *, batch: int = 200) -> int:
        """Unpaid orders past their deadline become expired (their units come back). An order
        whose payment lease ran out is asked about first: a payment that succeeded makes it
        paid instead. Each order moves once, whatever other replicas do (conditional UPDATE)."""
        now = utcnow()
        async with self.transactions.read() as orders:
            due = await orders.past_deadline(now=now, limit=batch)
        moved = 0
        for order_id, token, lease_until in due:
            if lease_until is not None and lease_until >= now:
                continue  # a payment is being made right now; its outcome decides
            if token is not None and await self._paid_meanwhile(order_id):
                moved += 1
                continue
            async with self.transactions.write() as orders:
                expired = await orders.expire(order_id, now=now)
            if expired:
                moved += 1
                self.effects.settle_soon(order_id)
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
