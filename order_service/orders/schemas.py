"""Request and response bodies of the order routes (internal bodies: shared.internal.orders)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.contracts import MAX_ID
from shared.internal.orders import OrderStatus
from shared.schemas import ApiModel, Page, RequestModel, UtcDatetime


class OrderCreate(RequestModel):
    product_id: Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
    quantity: Annotated[int, Field(ge=1, le=100, strict=True)]


class OrderOut(ApiModel):
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
