"""order_service's internal API, for payment_service:

    POST /internal/orders/{order_id}/payment-lease   PaymentLeaseRequest -> PaymentLease
    POST /internal/orders/{order_id}/paid            PaymentResult -> OrderState
    POST /internal/orders/{order_id}/payment-failed  PaymentResult -> OrderState

A lease is the right to charge the order now: only a `pending_payment` order of that user, not
past its deadline, with no other payment in flight, gets one; while it runs the order is not
expired under the payment. `paid` and `payment-failed` are idempotent by payment id and answer
the order's state; `paid` for an order that is no longer payable (expired, cancelled) is
409 `invalid_state`, and the payment must then be voided.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.contracts import MAX_ID
from shared.schemas import ApiModel, RequestModel, UtcDatetime

PREFIX = "/internal/orders"

OrderStatus = Literal["pending_payment", "paid", "payment_failed", "cancelled", "expired",
                      "refunded"]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Token = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


def order_path(order_id: int, action: str) -> str:
    return f"{PREFIX}/{order_id}/{action}"


class PaymentLeaseRequest(RequestModel):
    user_id: Id


class PaymentLease(ApiModel):
    order_id: int
    user_id: int
    amount: int
    lease_token: str
    lease_until: UtcDatetime


class PaymentResult(RequestModel):
    payment_id: Id
    lease_token: Token


class OrderState(ApiModel):
    order_id: int
    status: OrderStatus
