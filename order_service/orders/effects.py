"""The effects an order owes other services, and the loops that settle them.

A transition (orders/transitions.py) writes what it owes on the order row (stock_effect,
payment_effect) in its own transaction; the effect is carried out right after the commit and,
if that fails, retried by `settle_overdue` until it lands. Every effect is idempotent at the
other end. Holds no order was ever made for (a crash between the reserve and the insert) are
found and released by `release_orphan_holds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from order_service.clients import PaymentsClient, StockClient
from order_service.orders.admission import OrderAdmission
from order_service.orders.errors import StockUnavailable
from order_service.orders.models import PaymentEffect, StockEffect
from order_service.orders.repository import OrderReads, OrderRepository
from shared.clock import utcnow
from shared.db import Transactions
from shared.http import ServiceCallFailed
from shared.reads import ReadSession

logger = logging.getLogger("order_service.orders")


class OrderEffects:
    def __init__(self, *, transactions: Transactions[OrderRepository], reads: ReadSession,
                 admission: OrderAdmission, stock: StockClient, payments: PaymentsClient,
                 orphan_after: timedelta) -> None:
        self.transactions = transactions
        # What an order owes is read outside a transaction: one round trip, no ROLLBACK.
        self.reads = OrderReads(reads)
        self.admission = admission
        self.stock = stock
        self.payments = payments
        self.orphan_after = orphan_after
        self._running: set[asyncio.Task[None]] = set()

    def settle_soon(self, order_id: int) -> asyncio.Task[None]:
        task = asyncio.create_task(self._settle_logged(order_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def settle_before_answering(self, order_id: int) -> None:
        """For a transition that gives units back: the answer tells the client the order is no
        longer live, so its next order must find the units there (the limit and the stock count
        live orders only). A failed release is logged and retried by `settle_overdue`; the
        shield keeps it running, and drained on shutdown, if the request is cancelled."""
        await asyncio.shield(self.settle_soon(order_id))

    async def _settle_logged(self, order_id: int) -> None:
        try:
            await self.settle(order_id)
        except Exception:
            logger.warning("effects of an order not carried out yet; retried later",
                           extra={"order_id": order_id}, exc_info=True)

    async def settle(self, order_id: int) -> None:
        order = await self.reads.settling(order_id)
        if order is None:
            return
        if order.stock_effect == "release":
            if await self.stock.release(product_id=order.product_id, order_id=order_id):
                self.admission.units_back(order.product_id)
                await self._done(order_id, stock_effect="release")
        elif order.stock_effect == "commit":
            outcome = await self.stock.commit(product_id=order.product_id, order_id=order_id)
            if outcome == "committed":
                await self._done(order_id, stock_effect="commit")
            else:
                # Paid, but its units are gone: never both a charge and no units.
                logger.error("a paid order's hold was not there to commit; refunding",
                             extra={"order_id": order_id, "hold": outcome})
                async with self.transactions.write() as orders:
                    await orders.refund_unsold(order_id)
                    order = await orders.settling(order_id)
                assert order is not None
        if order.payment_effect == "refund":
            try:
                refunded = await self.payments.refund(order_id)
            except ServiceCallFailed:
                return
            if refunded:
                await self._done(order_id, payment_effect="refund")

    async def _done(self, order_id: int, *, stock_effect: StockEffect | None = None,
                    payment_effect: PaymentEffect | None = None) -> None:
        async with self.transactions.write() as orders:
            await orders.effect_done(order_id, stock_effect=stock_effect,
                                     payment_effect=payment_effect)

    async def settle_overdue(self, *, batch: int = 200) -> int:
        """Effects that did not land right after their transition (a service was down)."""
        async with self.transactions.read() as orders:
            order_ids = await orders.unsettled(older_than=utcnow() - timedelta(seconds=2),
                                               limit=batch)
        for order_id in order_ids:
            with contextlib.suppress(StockUnavailable, ServiceCallFailed):
                await self.settle(order_id)
        return len(order_ids)

    async def release_orphan_holds(self, *, page_size: int = 500) -> int:
        """Holds with no order (the process died between the reserve and the insert): given back
        once they are `orphan_after` old. Orders are inserted within seconds of their reserve,
        so an older hold without one will never get one. The age is stock_service's to judge
        (a hold's created_at is its clock; this process's may be off)."""
        released = 0
        after = 0
        while True:
            page = await self.stock.held_holds(older_than=self.orphan_after, after=after,
                                               limit=page_size)
            async with self.transactions.read() as orders:
                known = await orders.existing_ids([hold.order_id for hold in page.items])
            for hold in page.items:
                if hold.order_id not in known:
                    await self.stock.release(product_id=hold.product_id, order_id=hold.order_id)
                    self.admission.units_back(hold.product_id)
                    released += 1
            if page.next_after is None:
                return released
            after = page.next_after

    async def drain(self) -> None:
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
