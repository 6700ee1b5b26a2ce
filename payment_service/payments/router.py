"""HTTP routes of payments, and the internal API order_service calls (under /internal, never
routed by the gateway)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from payment_service.dependencies import (
    PaymentChargingDep,
    PaymentOutcomesDep,
    PaymentRefundsDep,
    ResourcesDep,
)
from payment_service.payments.errors import (
    InvalidWebhookSignature,
    NoCharge,
    OrderNotFound,
    OrderNotPayable,
    OrdersUnavailable,
    PaymentNotFound,
    PaymentPending,
    ProcessorUnavailable,
)
from payment_service.payments.processor_api import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ChargeEvent,
    webhook_signature_valid,
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
from shared.identity import CurrentUser, internal_callers
from shared.internal.payments import PREFIX, PaymentView

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])
internal_router = APIRouter(prefix=PREFIX, tags=["internal"], include_in_schema=False,
                          dependencies=[internal_callers("order_service")])

# Called by the card processor directly (never routed by the gateway), signed with the webhook
# secret instead of the gateway's identity signature.
webhook_router = APIRouter(prefix="/webhooks", tags=["webhooks"], include_in_schema=False)

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
        "order is paid) or `failed` with a `failure_code` (`card_declined`, "
        "`processor_declined`: the order's units go back; `interrupted`: the processor did not "
        "decide within the payment's time budget, the charge is voided and the order stays "
        "payable). A 503 with Retry-After: the payment may still be going on; retry with the "
        "same Idempotency-Key for its answer. "
        "Test cards: 4242424242424242 succeeds, 4000000000000002 is declined. Only the last "
        "four digits are kept."
    ),
)
async def create_payment(body: PaymentCreate, user_id: CurrentUser, key: IdempotencyKeyDep,
                         charging: PaymentChargingDep) -> JSONResponse:
    answer = await charging.pay(user_id, body, key)
    return JSONResponse(answer.body, status_code=answer.status,
                        media_type=PROBLEM_CONTENT_TYPE if answer.status >= 400 else None)


@router.get("/{payment_id}", responses=problem_responses(Unauthorized, PaymentNotFound,
                                                         ValidationFailed))
async def get_payment(payment_id: Id, user_id: CurrentUser,
                      charging: PaymentChargingDep) -> PaymentOut:
    return await charging.get(user_id, payment_id)


@internal_router.get("/by-order/{order_id}", responses=problem_responses(PaymentNotFound))
async def latest_payment_of_order(order_id: Id, refunds: PaymentRefundsDep) -> PaymentView:
    return await refunds.latest_for_order(order_id)


@internal_router.post("/by-order/{order_id}/refund",
                      responses=problem_responses(NoCharge, PaymentPending, ProcessorUnavailable))
async def refund_order_payment(order_id: Id, refunds: PaymentRefundsDep) -> PaymentView:
    return await refunds.refund(order_id)


@webhook_router.post("/processor", responses=problem_responses(
    InvalidWebhookSignature, ValidationFailed, ProcessorUnavailable))
async def processor_webhook(request: Request, resources: ResourcesDep,
                            outcomes: PaymentOutcomesDep) -> dict[str, bool]:
    """A charge's new state. 2xx acknowledges it (the processor stops sending); anything else
    and it is sent again."""
    body = await request.body()
    settings = resources.settings
    if not webhook_signature_valid(
            settings.processor_webhook_secret.get_secret_value().encode(),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER), body=body, now=time.time(),
            tolerance_seconds=settings.webhook_tolerance_seconds):
        outcomes.metrics.webhooks.labels("bad_signature").inc()
        raise InvalidWebhookSignature()
    try:
        event = ChargeEvent.model_validate_json(body)
    except ValidationError:
        outcomes.metrics.webhooks.labels("malformed").inc()
        raise ValidationFailed("The webhook's body is not a charge event.") from None
    await outcomes.take_charge_event(event)
    outcomes.metrics.webhooks.labels("taken").inc()
    return {"received": True}
