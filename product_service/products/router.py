"""HTTP routes of products; the caller is the gateway's X-User-Id. (Both
/api/v1/products/{id}/stock routes belong to stock_service.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from product_service.dependencies import ProductsReaderDep, ProductsServiceDep
from product_service.products.errors import (
    NotTheSeller,
    ProductNotFound,
    SaleStarted,
    StockUnavailable,
)
from product_service.products.schemas import Kind, ProductCreate, ProductOut, ProductUpdate
from shared.contracts import MAX_ID
from shared.errors import Unauthorized, ValidationFailed, problem_responses
from shared.identity import CurrentSeller, CurrentUser, NotASeller
from shared.pagination import Cursor, Limit
from shared.schemas import Page

router = APIRouter(prefix="/api/v1/products", tags=["products"])

ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]
KindFilter = Annotated[Kind | None, Query(description="Only products of this kind")]


@router.post(
    "", status_code=status.HTTP_201_CREATED,
    responses=problem_responses(Unauthorized, NotASeller, ValidationFailed, StockUnavailable),
    description=(
        "Only an account with the `seller` role (granted by an operator) may list a product "
        "(others: 403 `forbidden`); the caller becomes its seller. `preorder` needs "
        "`sale_opens_at`; a `general` product is on sale from its creation and takes none. "
        "`sale_closes_at`, if given, is after `sale_opens_at`; `limit_per_user` counts units "
        "(null: no limit). Times carry a zone. The stock is registered with the stock service "
        "before the answer: if it cannot be, nothing is created (503)."
    ),
)
async def create_product(body: ProductCreate, user_id: CurrentSeller,
                         products: ProductsServiceDep) -> ProductOut:
    return await products.create(user_id, body)


@router.get("", responses=problem_responses(ValidationFailed),
            description="Newest first; `kind` narrows the list to one kind.")
async def list_products(products: ProductsReaderDep, kind: KindFilter = None,
                        limit: Limit = 20, cursor: Cursor = None) -> Page[ProductOut]:
    return await products.list(kind=kind, cursor=cursor, limit=limit)


@router.get("/{product_id}", response_model=ProductOut,
            responses=problem_responses(ProductNotFound, ValidationFailed),
            description="Served from a cache invalidated on every change; `sale_state` is "
                        "computed when the answer is made.")
async def get_product(product_id: ProductId, products: ProductsReaderDep) -> Response:
    # The cached JSON as it is: no model to validate and dump again on the hottest read.
    return Response(await products.detail(product_id), media_type="application/json")


@router.patch(
    "/{product_id}",
    responses=problem_responses(Unauthorized, NotTheSeller, ProductNotFound, SaleStarted,
                                ValidationFailed, StockUnavailable),
    description=(
        "Seller only (another user's product: 403 `forbidden`). Absent fields stay as they "
        "are; null clears `sale_closes_at` or `limit_per_user`. Once the sale has opened, "
        "the window, `price` and `limit_per_user` are fixed (409 `invalid_state`): buyers "
        "decided on them. The name and description may still change."
    ),
)
async def update_product(product_id: ProductId, body: ProductUpdate, user_id: CurrentUser,
                         products: ProductsServiceDep) -> ProductOut:
    return await products.update(user_id, product_id, body)


@router.delete(
    "/{product_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
    responses=problem_responses(Unauthorized, NotTheSeller, ProductNotFound, ValidationFailed,
                                StockUnavailable),
    description=("Seller only. The product can no longer be ordered, and is gone (404) from "
                 "then on; orders already made keep their holds."),
)
async def delete_product(product_id: ProductId, user_id: CurrentUser,
                         products: ProductsServiceDep) -> Response:
    await products.delete(user_id, product_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
