"""payment_service with a fault built in, for the crash tests only: the app production runs, with
its charging given outcomes that exit at the worst moment, through `dependency_overrides`.
Started as `uvicorn --factory payment_service.tests.faults:create_app_with_fault`:

- after the outcome: a succeeded payment and its outbox row are committed, and the process
  exits before order_service is told (the outbox loop of the next process must tell it).
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from payment_service.app import create_app
from payment_service.dependencies import get_payment_charging
from payment_service.payments.charging import PaymentCharging
from payment_service.payments.outcomes import PaymentOutcomes
from payment_service.payments.repository import Undelivered
from shared.deadline import Deadline
from shared.dependencies import AppResources

WITH_FAULT = "payment_service.tests.faults:create_app_with_fault"
logger = logging.getLogger("payment_service.tests.faults")


class DiesAfterOutcome(PaymentOutcomes):
    async def deliver(self, outcome: Undelivered, *,
                      deadline: Deadline | None = None) -> bool | None:
        logger.error("fault injected: exiting after the outcome",
                     extra={"payment_id": outcome.payment_id})
        os._exit(17)


def with_fault(real: PaymentCharging) -> PaymentCharging:
    """`real`'s parts, its outcomes dying after they are written."""
    outcomes = DiesAfterOutcome(transactions=real.outcomes.transactions,
                                reads=real.reads.reads, orders=real.outcomes.orders,
                                processor=real.outcomes.processor)
    faulty = PaymentCharging(transactions=real.transactions, reads=real.reads.reads,
                             orders=real.orders, processor=real.processor, keys=real.keys,
                             outcomes=outcomes, budget_seconds=real.budget_seconds)
    return faulty


def create_app_with_fault() -> FastAPI:
    app = create_app()
    faulty: dict[int, PaymentCharging] = {}

    async def charging_with_fault(resources: AppResources) -> PaymentCharging:
        real = await get_payment_charging(resources)
        if id(real) not in faulty:
            faulty[id(real)] = with_fault(real)
        return faulty[id(real)]

    app.dependency_overrides[get_payment_charging] = charging_with_fault
    return app
