"""HTTP routes of orders, and the internal API payment_service calls (under /internal, never
routed by the gateway)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse

from order_service.dependencies import (
    OrderCreationDep,
    OrderIdNotedInFront,
    OrderTransitionsDep,
    SlotTakenInFront,
    TicketReadsDep,
)
from order_service.orders.admission import answered_in_front
from order_service.orders.errors import (
    LineFull,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotPayable,
    StockUnavailable,
    TicketNotFound,
    UnpaidOrderExists,
)
from order_service.orders.line import FINAL_STATES
from order_service.orders.schemas import OrderCreate, OrderOut, OrderPage, TicketOut
from shared.contracts import EDGE_FINAL_FINAL, EDGE_FINAL_HEADER, EDGE_FINAL_PENDING, MAX_ID
from shared.errors import (
    PROBLEM_CONTENT_TYPE,
    DatabaseUnavailable,
    ProblemError,
    Unauthorized,
    ValidationFailed,
    problem_responses,
)
from shared.idempotency import (
    IdempotencyKeyDep,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    problem_answer,
)
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
from shared.sse import EventStreamResponse

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])
internal_router = APIRouter(prefix=PREFIX, tags=["internal"], include_in_schema=False,
                          dependencies=[internal_callers("payment_service")])

OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
# Any string: one that is no ticket is a ticket nobody has (404), as an unknown id is.
TicketId = Annotated[str, Path(max_length=64)]


def _order_key(order: OrderOut) -> Key:
    return Key(order.created_at, order.id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    responses={**problem_responses(
        Unauthorized, ProductNotFound, SaleNotOpen, SaleClosed, SoldOut, PurchaseLimitExceeded,
        UnpaidOrderExists, IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed,
        LineFull, StockUnavailable, DatabaseUnavailable),
        202: {"model": TicketOut, "description": (
            "A place in the product's line (more buyers asked at once than its orders are "
            "decided at once): follow `status_url`; `Retry-After` says when to look.")}},
    description=(
        "Reserves `quantity` units for the caller until `expires_at` (the order's time to "
        "pay). One unpaid order per buyer per product: another one is 409 "
        "`unpaid_order_exists`. With an `Idempotency-Key`, a retry with the same body returns "
        "the first answer; while the first is still running, 409 `idempotency_key_in_use`. "
        "At an opening's crowd: 202 and a ticket, one place per buyer per product (asking "
        "again returns the same ticket; a retry with the key, the ticket or its answer); a "
        "full line is 429 `rate_limited`."
    ),
)
async def create_order(request: Request, body: OrderCreate, user_id: CurrentUser,
                       key: IdempotencyKeyDep, orders: OrderCreationDep,
                       slot: SlotTakenInFront, noted: OrderIdNotedInFront) -> JSONResponse:
    try:
        answer = await orders.create(user_id, body, key, slot=slot, noted=noted)
    except ProblemError as problem:
        answered_in_front(request.scope, problem_answer(problem))
        raise
    answered_in_front(request.scope, answer)
    return JSONResponse(answer.body, status_code=answer.status,
                        media_type=PROBLEM_CONTENT_TYPE if answer.status >= 400 else None)


@router.get(
    "/tickets/{ticket}",
    response_model=TicketOut,
    response_model_exclude_none=True,
    responses=problem_responses(Unauthorized, TicketNotFound, ValidationFailed),
    description=(
        "The caller's place in a product's line: `waiting` (with its position), `ordered` "
        "(with the order, as a 201 carries it) or `refused` (with the problem, as the refusal "
        "carries it). `?wait=N` (1..25) holds the request until the answer is given or N "
        "seconds pass. Someone else's ticket, or one kept past its time, is 404."
    ),
)
async def get_ticket(ticket: TicketId, user_id: CurrentUser, tickets: TicketReadsDep,
                     wait: Annotated[int | None, Query(ge=1, le=25)] = None) -> JSONResponse:
    body = await tickets.get(user_id, ticket, wait=wait)
    # For the gateway, which then holds the ticket's stream itself instead of opening one here
    # (shared/edge_finals.py): its answer is given, or will be published for the edge.
    mark = EDGE_FINAL_FINAL if body["state"] in FINAL_STATES else \
        EDGE_FINAL_PENDING if tickets.line.publishes_finals else None
    return JSONResponse(body, headers={EDGE_FINAL_HEADER: mark} if mark else None)


@router.get(
    "/tickets/{ticket}/events",
    responses={**problem_responses(Unauthorized, TicketNotFound, ValidationFailed),
               200: {"content": {"text/event-stream": {}},
                     "description": "Server-sent events: the ticket's body, then its answer."}},
    response_class=EventStreamResponse,
    status_code=200,  # stated: EventStreamResponse's signature names none (see stock's /live)
    description=(
        "The ticket's body as server-sent events: at once, again when its `position` moves "
        "up (at most every 0.5 s), and when it is answered (`ordered` or `refused`), where "
        "the stream ends; a comment line every 15 s meanwhile."
    ),
)
async def ticket_events(ticket: TicketId, user_id: CurrentUser,
                        tickets: TicketReadsDep) -> EventStreamResponse:
    return await tickets.events(user_id, ticket)


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
