"""Request and response bodies of the payment routes (internal: shared.internal.payments)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema

from payment_service.payments.processor import luhn_valid
from shared.contracts import MAX_ID
from shared.internal.payments import PaymentStatus
from shared.schemas import ApiModel, RequestModel, UtcDatetime


def _card(value: str) -> str:
    # The messages never repeat the number: validation errors end up in logs and answers.
    if len(value) != 16 or not value.isascii() or not value.isdigit():
        raise ValueError("must be 16 digits")
    if not luhn_valid(value):
        raise ValueError("is not a valid card number")
    return value


CardNumber = Annotated[
    str, AfterValidator(_card),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{16}$", "writeOnly": True}),
]


class PaymentCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "order_id": 1001, "card_number": "4242424242424242",
    }]})

    order_id: Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
    card_number: CardNumber


class PaymentOut(ApiModel):
    # The example is a declined card: the OpenAPI document drops null values from examples,
    # so a succeeded payment's `failure_code: null` would show as a missing required field.
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 501, "order_id": 1001, "amount": 120000, "status": "failed", "failure_code": "card_declined",
        "created_at": "2026-12-24T12:01:00Z",
    }]})

    id: int
    order_id: int
    amount: int
    status: PaymentStatus
    failure_code: str | None
    created_at: UtcDatetime
