"""HTTP routes of orders, and the internal API payment_service calls (under /internal, never
routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from order_service.dependencies import OrderCreationDep, OrderTransitionsDep, SlotTakenInFront
from order_service.orders.errors import (
    OrderNotCancellable,
    OrderNotFound,
    OrderNotPayable,
    StockUnavailable,
    UnpaidOrderExists,
)
from order_service.orders.schemas import OrderCreate, OrderOut, OrderPage
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
from shared.internal.orders import (
    PREFIX,
    OrderState,
    OrderStatus,
    PaymentLease,
    PaymentLeaseRequest,
    PaymentResult,
)
from shared.internal.stock import (
    ProductNotFound,
    PurchaseLimitExceeded,
    SaleClosed,
    SaleNotOpen,
    SoldOut,
)
from shared.pagination import Cursor, Key, Limit, page_of

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])
internal_router = APIRouter(prefix=PREFIX, tags=["internal"], include_in_schema=False,
                          dependencies=[internal_callers("payment_service")])

OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _order_key(order: OrderOut) -> Key:
    return Key(order.created_at, order.id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    responses=problem_responses(
        Unauthorized, ProductNotFound, SaleNotOpen, SaleClosed, SoldOut, PurchaseLimitExceeded,
        UnpaidOrderExists, IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed, StockUnavailable,
        DatabaseUnavailable),
    description=(
        "Reserves `quantity` units for the caller until `expires_at` (the order's time to "
        "pay). One unpaid order per buyer per product: another one is 409 "
        "`unpaid_order_exists`. With an `Idempotency-Key`, a retry with the same body returns "
        "the first answer; while the first is still running, 409 `idempotency_key_in_use`."
    ),
)
async def create_order(body: OrderCreate, user_id: CurrentUser, key: IdempotencyKeyDep,
                       orders: OrderCreationDep, slot: SlotTakenInFront) -> JSONResponse:
    answer = await orders.create(user_id, body, key, slot=slot)
    return JSONResponse(answer.body, status_code=answer.status,
                        media_type=PROBLEM_CONTENT_TYPE if answer.status >= 400 else None)


@router.get("", responses=problem_responses(Unauthorized, ValidationFailed))
async def list_orders(user_id: CurrentUser, orders: OrderTransitionsDep,
                      status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
                      limit: Limit = 20, cursor: Cursor = None) -> OrderPage:
    items = await orders.page(user_id, status=status_filter, limit=limit + 1,
                              after=Key.from_cursor(cursor))
    page, next_cursor = page_of(items, limit, _order_key)
    return OrderPage(items=page, next_cursor=next_cursor)


@router.get("/{order_id}", responses=problem_responses(Unauthorized, OrderNotFound,
                                                       ValidationFailed))
async def get_order(order_id: OrderId, user_id: CurrentUser,
                    orders: OrderTransitionsDep) -> OrderOut:
    return await orders.get(user_id, order_id)


@router.post(
    "/{order_id}/cancel",
    responses=problem_responses(Unauthorized, OrderNotFound, OrderNotCancellable,
                                ValidationFailed),
    description=(
        "`pending_payment` becomes `cancelled`, `paid` becomes `refunded` (the payment is "
        "refunded); the units return either way. Any other state: 409 `invalid_state`."
    ),
)
async def cancel_order(order_id: OrderId, user_id: CurrentUser,
                       orders: OrderTransitionsDep) -> OrderOut:
    return await orders.cancel(user_id, order_id)


# Internal: payment_service


@internal_router.post("/{order_id}/payment-lease",
                      responses=problem_responses(OrderNotFound, OrderNotPayable))
async def lease_for_payment(order_id: OrderId, body: PaymentLeaseRequest,
                            orders: OrderTransitionsDep) -> PaymentLease:
    return await orders.lease_for_payment(order_id, body.user_id)


@internal_router.post("/{order_id}/paid", responses=problem_responses(OrderNotFound,
                                                                       OrderNotPayable))
async def order_paid(order_id: OrderId, body: PaymentResult,
                     orders: OrderTransitionsDep) -> OrderState:
    return await orders.mark_paid(order_id, payment_id=body.payment_id, token=body.lease_token)


@internal_router.post("/{order_id}/payment-failed", responses=problem_responses(OrderNotFound))
async def order_payment_failed(order_id: OrderId, body: PaymentResult,
                               orders: OrderTransitionsDep) -> OrderState:
    return await orders.mark_payment_failed(order_id, payment_id=body.payment_id,
                                            token=body.lease_token)
