"""Expiry: an unpaid order past its deadline becomes expired and its units come back, on time,
whatever payment_service does.

An order never leased to a payment is expired by the round that finds it. One whose payment
lease ran out is asked about first (a payment that succeeded makes it paid instead): each such
check runs on its own task, at most CHECKS_AT_ONCE at a time and for at most `check_timeout`,
so a slow or absent payment_service delays only the orders it is asked about, by that much at
most, and never the round. If payment_service cannot answer in time the order expires: a charge
that succeeds later finds it expired, mark_paid refuses it, and the charge is voided. A check
that fails otherwise skips its order (logged; asked again next round). An order whose lease is
still running is not looked at. Each round walks every due order in deadline order, page by
page, so orders skipped at the head never hide the ones behind them.
"""

from __future__ import annotations

import asyncio
import logging

from order_service.clients import PaymentsClient
from order_service.orders.effects import OrderEffects
from order_service.orders.repository import DueKey, OrderRepository
from order_service.orders.transitions import OrderTransitions
from shared.clock import utcnow
from shared.db import Transactions
from shared.http import ServiceCallFailed
from shared.sale_metrics import OrderMetrics

logger = logging.getLogger("order_service.orders")
# Payment checks in flight at once, per process: a slow payment_service is not asked about
# every lapsed lease at the same moment, and none of them waits on another for long.
CHECKS_AT_ONCE = 16


class OrderExpiry:
    def __init__(self, *, transactions: Transactions[OrderRepository], effects: OrderEffects,
                 payments: PaymentsClient, transitions: OrderTransitions,
                 check_timeout: float, metrics: OrderMetrics | None = None) -> None:
        self.metrics = metrics or OrderMetrics()
        self.transactions = transactions
        self.effects = effects
        self.payments = payments
        self.transitions = transitions
        self.check_timeout = check_timeout
        self._checks: dict[int, asyncio.Task[None]] = {}
        self._check_slots = asyncio.Semaphore(CHECKS_AT_ONCE)

    async def expire_due(self, *, batch: int = 200) -> int:
        """One round: unpaid orders past their deadline and free of a running lease expire, or
        have their payment checked first; returns how many expired or began a check. Each order
        moves once, whatever other replicas do (conditional UPDATE)."""
        now = utcnow()
        moved = 0
        after: DueKey | None = None
        while True:
            async with self.transactions.read() as orders:
                due = await orders.past_deadline(now=now, after=after, limit=batch)
            if after is None:  # in deadline order: the first is the most overdue
                self.metrics.expiry_round(
                    (now - due[0].key.expires_at).total_seconds() if due else 0.0)
            for order in due:
                if order.leased:
                    moved += self._check_soon(order.order_id)
                elif await self._expire_logged(order.order_id):
                    moved += 1
            if len(due) < batch:
                return moved
            after = due[-1].key

    def _check_soon(self, order_id: int) -> int:
        """1 if a check of the order began, 0 if one is running already."""
        if order_id in self._checks:
            return 0
        task = asyncio.create_task(self._check_logged(order_id))
        self._checks[order_id] = task
        task.add_done_callback(lambda _: self._checks.pop(order_id, None))
        return 1

    async def _check_logged(self, order_id: int) -> None:
        try:
            async with self._check_slots:
                await self._check_then_expire(order_id)
        except Exception:
            logger.warning("expiry of an order skipped this round", extra={"order_id": order_id},
                           exc_info=True)

    async def _check_then_expire(self, order_id: int) -> None:
        """The order's lease ran out: a payment still pending decides later, a succeeded one
        makes it paid; none, a failed one, or no answer in time: it expires."""
        try:
            async with asyncio.timeout(self.check_timeout):
                payment = await self.payments.latest_for_order(order_id)
        except (ServiceCallFailed, TimeoutError) as error:
            logger.info("payment_service could not tell in time; the order expires",
                        extra={"order_id": order_id, "reason": str(error)})
            payment = None
        if payment is not None and payment.status == "pending":
            return
        if payment is not None and payment.status == "succeeded":
            await self.transitions.mark_paid(order_id, payment_id=payment.id,
                                             token=payment.lease_token)
            return
        await self._expire(order_id)

    async def _expire_logged(self, order_id: int) -> bool:
        try:
            return await self._expire(order_id)
        except Exception:
            logger.warning("expiry of an order skipped this round", extra={"order_id": order_id},
                           exc_info=True)
            return False

    async def _expire(self, order_id: int) -> bool:
        async with self.transactions.write() as orders:
            expired = await orders.expire(order_id, now=utcnow())
        if expired:
            self.metrics.expired.inc()
            self.effects.settle_soon(order_id)
        return expired

    async def drain(self) -> None:
        """The checks still running, finished (the lifespan's end, after the loop stopped)."""
        while self._checks:
            await asyncio.gather(*list(self._checks.values()), return_exceptions=True)
