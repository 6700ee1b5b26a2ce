"""order_service's side of payments (the internal API): the latest payment of an order, and the
refund of a paid order's charge when it is cancelled."""

from __future__ import annotations

from payment_service.payments.errors import NoCharge, PaymentNotFound, PaymentPending
from payment_service.payments.outcomes import key_of
from payment_service.payments.processor import CardProcessor
from payment_service.payments.repository import PaymentReads, PaymentRepository
from shared.db import Transactions
from shared.internal.payments import PaymentView
from shared.reads import ReadSession
from shared.sale_metrics import PaymentMetrics


class PaymentRefunds:
    def __init__(self, *, transactions: Transactions[PaymentRepository], reads: ReadSession,
                 processor: CardProcessor, metrics: PaymentMetrics | None = None) -> None:
        self.transactions = transactions
        self.reads = PaymentReads(reads)
        self.processor = processor
        self.metrics = metrics or PaymentMetrics()

    async def latest_for_order(self, order_id: int) -> PaymentView:
        payment = await self.reads.latest_of_order(order_id)
        if payment is None:
            raise PaymentNotFound()
        return PaymentView(id=payment.id, order_id=order_id, status=payment.status,
                           lease_token=payment.lease_token)

    async def refund(self, order_id: int) -> PaymentView:
        """The order's succeeded payment is given back; idempotent. NoCharge only when no
        payment of the order holds a charge or may yet (order_service then counts the refund
        done); PaymentPending while one is being decided (asked again later)."""
        async with self.transactions.read() as payments:
            holding = await payments.holding_charges(order_id)
        if not holding:
            raise NoCharge()
        for payment in holding:
            if payment.status == "pending":
                raise PaymentPending()
            if payment.status == "succeeded":
                await self.processor.refund(key_of(payment))
                async with self.transactions.write() as payments:
                    moved = await payments.settle(payment.id, from_status="succeeded",
                                                  to_status="refunded")
                if moved:
                    self.metrics.decided("refunded", None)
        async with self.transactions.read() as payments:
            refunded = [p for p in await payments.holding_charges(order_id)
                        if p.status == "refunded"]
        if not refunded:
            raise PaymentPending()  # moved meanwhile (voided, say): asked again, then decided
        return PaymentView(id=refunded[-1].id, order_id=order_id, status="refunded",
                           lease_token=refunded[-1].lease_token)
