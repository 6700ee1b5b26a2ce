"""Request and response bodies of the order routes (internal bodies: shared.internal.orders)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from shared.contracts import MAX_ID
from shared.internal.orders import OrderStatus
from shared.schemas import ApiModel, Page, RequestModel, UtcDatetime


class OrderCreate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"product_id": 7, "quantity": 1}]})

    product_id: Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
    quantity: Annotated[int, Field(ge=1, le=100, strict=True)]


class OrderOut(ApiModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 1001, "user_id": 43, "product_id": 7, "quantity": 1, "unit_price": 120000,
        "amount": 120000, "status": "pending_payment", "expires_at": "2026-12-24T12:10:00Z",
        "created_at": "2026-12-24T12:00:00Z",
    }]})

    id: int
    user_id: int
    product_id: int
    quantity: int
    unit_price: int
    amount: int
    status: OrderStatus
    expires_at: UtcDatetime
    created_at: UtcDatetime


OrderPage = Page[OrderOut]
