"""Request and response bodies of the order routes (internal bodies: shared.internal.orders)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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


class TicketOut(ApiModel):
    """A place in the line of an opening (202 from POST /orders, and GET /orders/tickets/…)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "ticket": "7-Vb2mK9xQ0pLr3sTu", "product_id": 7, "position": 120, "state": "waiting",
        "status_url": "/api/v1/orders/tickets/7-Vb2mK9xQ0pLr3sTu",
    }]})

    ticket: str
    product_id: int
    # The place among those still waiting when last read (the place taken, once answered).
    position: int
    state: Literal["waiting", "ordered", "refused"]
    # In the 202 only: where to follow the ticket.
    status_url: str | None = None
    # `ordered`: the order, as a 201 would carry it.
    order: OrderOut | None = None
    # `refused`: the problem, as the 409 (or other refusal) would carry it.
    problem: dict[str, Any] | None = None
