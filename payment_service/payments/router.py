"""HTTP routes of payments, and the internal API order_service calls (under /internal, never
routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from fastapi.responses import JSONResponse

from payment_service.dependencies import PaymentsServiceDep
from payment_service.payments.errors import (
    OrderNotFound,
    OrderNotPayable,
    OrdersUnavailable,
    PaymentNotFound,
)
from payment_service.payments.schemas import PaymentCreate, PaymentOut
from shared.contracts import MAX_ID
from shared.errors import (
    PROBLEM_CONTENT_TYPE,
    DatabaseUnavailable,
    Unauthorized,
    ValidationFailed,
    problem_responses,
)
from shared.idempotency import IdempotencyKeyDep, IdempotencyKeyInUse, IdempotencyKeyReused
from shared.identity import CurrentUser, InternalCallersOnly
from shared.internal.payments import PREFIX, PaymentView

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])
internal_router = APIRouter(prefix=PREFIX, tags=["internal"], include_in_schema=False,
                          dependencies=[InternalCallersOnly])

Id = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentOut,
    responses=problem_responses(Unauthorized, OrderNotFound, OrderNotPayable,
                                IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed,
                                OrdersUnavailable, DatabaseUnavailable),
    description=(
        "Charges the card for the caller's `pending_payment` order: 201 with `succeeded` (the "
        "order is paid) or `failed` with a `failure_code` (the order's units go back). "
        "Test cards: 4242424242424242 succeeds, 4000000000000002 is declined. Only the last "
        "four digits are kept."
    ),
)
async def create_payment(body: PaymentCreate, user_id: CurrentUser, key: IdempotencyKeyDep,
                         payments: PaymentsServiceDep) -> JSONResponse:
    answer = await payments.pay(user_id, body, key)
    return JSONResponse(answer.body, status_code=answer.status,
                        media_type=PROBLEM_CONTENT_TYPE if answer.status >= 400 else None)


@router.get("/{payment_id}", responses=problem_responses(Unauthorized, PaymentNotFound,
                                                         ValidationFailed))
async def get_payment(payment_id: Id, user_id: CurrentUser,
                      payments: PaymentsServiceDep) -> PaymentOut:
    return await payments.get(user_id, payment_id)


@internal_router.get("/by-order/{order_id}", responses=problem_responses(PaymentNotFound))
async def latest_payment_of_order(order_id: Id, payments: PaymentsServiceDep) -> PaymentView:
    return await payments.latest_for_order(order_id)


@internal_router.post("/by-order/{order_id}/refund", responses=problem_responses(PaymentNotFound))
async def refund_order_payment(order_id: Id, payments: PaymentsServiceDep) -> PaymentView:
    return await payments.refund(order_id)
