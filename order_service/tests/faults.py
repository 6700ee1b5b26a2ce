"""order_service with a fault built in, for the crash tests only: the app production runs, with
its order creation replaced through `dependency_overrides` by one that fails at the worst
moment. Started as `uvicorn --factory order_service.tests.faults:create_app_with_fault` with
ORDER_TEST_FAULT naming the fault:

- `after_reserve`: the process exits holding units no order records;
- `insert_answer_lost`: the order's insert commits, then its connection fails before the
  answer, as a connection lost during COMMIT does;
- `insert_fails`: the order's insert fails before anything is written (the request is answered
  503).
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from order_service.app import create_app
from order_service.dependencies import get_order_creation
from order_service.orders.creation import OrderCreation
from order_service.orders.repository import NewOrder
from order_service.orders.schemas import OrderOut
from order_service.orders.writer import OrderWriter
from shared.dependencies import AppResources
from shared.idempotency import Claim

FAULT_VARIABLE = "ORDER_TEST_FAULT"
logger = logging.getLogger("order_service.tests.faults")


class DiesAfterReserve(OrderCreation):
    async def insert(self, order: OrderOut, claim: Claim | None) -> OrderOut:
        logger.error("fault injected: exiting after the reserve", extra={"order_id": order.id})
        os._exit(17)


class FailingWriter(OrderWriter):
    async def write(self, row: NewOrder) -> None:
        raise OperationalError("INSERT", {}, Exception(2013, "Lost connection"))


class AnswerLostWriter(OrderWriter):
    async def write(self, row: NewOrder) -> None:
        await super().write(row)
        raise OperationalError("COMMIT", {}, Exception(2013, "Lost connection"))


def with_fault(real: OrderCreation, fault: str) -> OrderCreation:
    """`real`'s parts, the fault added."""
    kind, writer = OrderCreation, real.writer
    if fault == "after_reserve":
        kind = DiesAfterReserve
    elif fault == "insert_answer_lost":
        writer = AnswerLostWriter(real.transactions)
    elif fault == "insert_fails":
        writer = FailingWriter(real.transactions)
    else:
        raise ValueError(f"unknown fault {fault!r}")
    return kind(transactions=real.transactions, admission=real.admission, stock=real.stock,
                ids=real.ids, keys=real.keys, payment_ttl=real.payment_ttl, writer=writer)


def create_app_with_fault() -> FastAPI:
    fault = os.environ[FAULT_VARIABLE]
    app = create_app()
    faulty: dict[int, OrderCreation] = {}

    async def creation_with_fault(resources: AppResources) -> OrderCreation:
        real = await get_order_creation(resources)
        if id(real) not in faulty:
            faulty[id(real)] = with_fault(real, fault)
        return faulty[id(real)]

    app.dependency_overrides[get_order_creation] = creation_with_fault
    return app
