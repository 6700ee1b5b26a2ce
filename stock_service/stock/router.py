"""HTTP routes of stock: the two public /api/v1/products/{id}/stock routes, and the internal API
(under /internal, never routed by the gateway) for product_service and order_service."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from shared.contracts import MAX_ID
from shared.errors import (
    DatabaseUnavailable,
    InvalidState,
    RedisUnavailable,
    Unauthorized,
    ValidationFailed,
    problem_responses,
)
from shared.http import RESENT_HEADER
from shared.identity import CurrentUser, internal_callers
from shared.internal.stock import (
    MAX_HOLD_AGE_SECONDS,
    PREFIX,
    Hold,
    HoldAnswer,
    HoldBatch,
    HoldBatchAnswer,
    HoldPage,
    HoldRequest,
    StockEntry,
    StockRegistration,
)
from stock_service.dependencies import CatalogServiceDep, HoldServiceDep
from stock_service.stock.errors import (
    HoldNotFound,
    HoldReleased,
    NotTheSeller,
    ProductNotFound,
    PurchaseLimitExceeded,
    SaleClosed,
    SaleNotOpen,
    SaleStarted,
    SoldOut,
    StockRebuilding,
)
from stock_service.stock.schemas import StockLevel, StockUpdate

router = APIRouter(prefix="/api/v1/products", tags=["stock"])
internal_router = APIRouter(prefix=PREFIX, tags=["internal"], include_in_schema=False,
                          dependencies=[internal_callers("product_service", "order_service")])

ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get(
    "/{product_id}/stock",
    responses=problem_responses(ProductNotFound, ValidationFailed, StockRebuilding),
    description=(
        "Units left to order and the sale's state, from the live inventory (Redis) alone, "
        "judged by its clock. While the live state is rebuilt: 503 with Retry-After."
    ),
)
async def get_stock(product_id: ProductId, catalog: CatalogServiceDep) -> StockLevel:
    return await catalog.public_level(product_id)


@router.put(
    "/{product_id}/stock",
    responses=problem_responses(Unauthorized, NotTheSeller, ProductNotFound, SaleStarted,
                                ValidationFailed),
    description=(
        "The seller sets the product's total stock, before the sale opens; once it has "
        "opened (a general product is open from its creation): 409 `invalid_state`."
    ),
)
async def set_stock(product_id: ProductId, body: StockUpdate, user_id: CurrentUser,
                    catalog: CatalogServiceDep) -> StockLevel:
    return await catalog.set_total(product_id, seller_id=user_id, total=body.stock)


# Internal: product registration (product_service)


@internal_router.put("/products/{product_id}")
async def register_product(product_id: ProductId, body: StockRegistration,
                           catalog: CatalogServiceDep) -> StockEntry:
    return await catalog.register(product_id, body)


@internal_router.get("/products/{product_id}")
async def get_product_stock(product_id: ProductId, catalog: CatalogServiceDep) -> StockEntry:
    return await catalog.get_entry(product_id)


@internal_router.delete("/products/{product_id}", status_code=status.HTTP_204_NO_CONTENT,
                        response_class=Response)
async def unregister_product(product_id: ProductId, catalog: CatalogServiceDep) -> Response:
    await catalog.unregister(product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Internal: holds (order_service)


@internal_router.put(
    "/products/{product_id}/holds/{order_id}",
    responses=problem_responses(ProductNotFound, HoldNotFound, SaleNotOpen, SaleClosed, SoldOut,
                                PurchaseLimitExceeded, StockRebuilding, DatabaseUnavailable),
)
async def reserve(product_id: ProductId, order_id: OrderId, body: HoldRequest,
                  holds: HoldServiceDep,
                  resent: Annotated[str | None, Header(alias=RESENT_HEADER)] = None) -> Hold:
    return await holds.reserve(product_id, order_id, user_id=body.user_id,
                               quantity=body.quantity, expires_at=body.expires_at,
                               resent=resent is not None)


@internal_router.post(
    "/products/{product_id}/holds",
    responses=problem_responses(ValidationFailed, RedisUnavailable),
)
async def reserve_many(product_id: ProductId, body: HoldBatch, holds: HoldServiceDep,
                       resent: Annotated[str | None, Header(alias=RESENT_HEADER)] = None,
                       ) -> HoldBatchAnswer:
    # Sent again after its connection closed: every reserve of it may have been carried out.
    asks = body.holds if resent is None else \
        [ask.model_copy(update={"resent": True}) for ask in body.holds]
    answers = await holds.reserve_many(product_id, asks)
    return HoldBatchAnswer(answers=[HoldAnswer.of(ask.order_id, answer)
                                    for ask, answer in zip(asks, answers, strict=True)])


@internal_router.get("/products/{product_id}/holds/{order_id}",
                     responses=problem_responses(HoldNotFound))
async def get_hold(product_id: ProductId, order_id: OrderId, holds: HoldServiceDep) -> Hold:
    return await holds.get_hold(product_id, order_id)


@internal_router.post("/products/{product_id}/holds/{order_id}/commit",
                      responses=problem_responses(HoldNotFound, HoldReleased, InvalidState))
async def commit_hold(product_id: ProductId, order_id: OrderId, holds: HoldServiceDep) -> Hold:
    return await holds.commit(product_id, order_id)


@internal_router.post("/products/{product_id}/holds/{order_id}/release",
                      responses=problem_responses(HoldNotFound))
async def release_hold(product_id: ProductId, order_id: OrderId, holds: HoldServiceDep) -> Hold:
    return await holds.release(product_id, order_id)


@internal_router.get("/holds")
async def list_held_holds(
    holds: HoldServiceDep,
    older_than_seconds: Annotated[float, Query(ge=0, le=MAX_HOLD_AGE_SECONDS)],
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> HoldPage:
    return await holds.held_holds(older_than=timedelta(seconds=older_than_seconds),
                                  after_order_id=after, limit=limit)
