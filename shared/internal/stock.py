"""stock_service's internal API: what product_service (registering products) and order_service
(holding stock for orders) send and read.

    PUT    /internal/stock/products/{product_id}                     StockRegistration -> StockEntry
    GET    /internal/stock/products/{product_id}                     -> StockEntry
    DELETE /internal/stock/products/{product_id}                     -> 204 (no more orders)
    PUT    /internal/stock/products/{product_id}/holds/{order_id}    HoldRequest -> Hold (reserve)
    POST   /internal/stock/products/{product_id}/holds               HoldBatch -> HoldBatchAnswer
           (many reserves of one product in one call, each answered as the PUT would be)
    GET    /internal/stock/products/{product_id}/holds/{order_id}    -> Hold
    POST   /internal/stock/products/{product_id}/holds/{order_id}/commit   -> Hold (sold)
    POST   /internal/stock/products/{product_id}/holds/{order_id}/release  -> Hold (units back)
    GET    /internal/stock/holds?older_than_seconds=&after=&limit=  -> HoldPage (held ones,
           at least that old by stock_service's clock, by order id)

Every call is idempotent: a hold is keyed by its order id, so replaying a reserve, a commit or
a release changes nothing and answers as the first did. A batch of reserves is decided in its
order: an earlier hold in it takes the last units before a later one. Refusals are problem
documents with the contract's codes: 404 `not_found` (no such product) or `hold_not_found`, 409
`sale_not_open`, `sale_closed`, `sold_out`, `purchase_limit_exceeded`, `invalid_state`; 503
`upstream_unavailable` with Retry-After while a product's live state is being rebuilt from the
ledger.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from shared.contracts import MAX_ID
from shared.errors import Conflict, NotFound, ProblemError
from shared.sale_window import SaleState
from shared.schemas import ApiModel, RequestModel, UtcDatetime, UtcDatetimeIn

PREFIX = "/internal/stock"


# The refusals of a reserve: answered by stock_service and passed on as they are by
# order_service (the public API's codes).
class SoldOut(Conflict):
    code = "sold_out"
    title = "Sold out"


class SaleNotOpen(Conflict):
    code = "sale_not_open"
    title = "The sale has not opened yet"


class SaleClosed(Conflict):
    code = "sale_closed"
    title = "The sale has closed"


class PurchaseLimitExceeded(Conflict):
    code = "purchase_limit_exceeded"
    title = "Past the purchase limit per user"


class ProductNotFound(NotFound):
    title = "Product not found"


# The one table of a reserve's refusals: the code the reserve script (stock_service's
# stock/scripts.py) and the ledger's guard answer with is the problem's `code` on the wire, and
# order_service reads a 4xx back into the same error.
RefusalCode = Literal["not_found", "sale_not_open", "sale_closed", "purchase_limit_exceeded",
                      "sold_out"]
REFUSALS: dict[RefusalCode, type[ProblemError]] = {
    "not_found": ProductNotFound, "sale_not_open": SaleNotOpen, "sale_closed": SaleClosed,
    "purchase_limit_exceeded": PurchaseLimitExceeded, "sold_out": SoldOut,
}


# A hold stock_service has no record of (in its ledger): not a refusal of the reserve. A resent
# reserve answers it when Redis granted the hold and gave it back before the ledger heard.
HOLD_NOT_FOUND = "hold_not_found"


def refusal_code(word: str | None) -> RefusalCode | None:
    """`word` (a script's answer, a problem's code) if it is a reserve's refusal, else None."""
    return word if word in REFUSALS else None

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Quantity = Annotated[int, Field(ge=1, le=100)]
HoldState = Literal["held", "committed", "released"]


def product_path(product_id: int) -> str:
    return f"{PREFIX}/products/{product_id}"


HELD_HOLDS_PATH = f"{PREFIX}/holds"
# A hold's age is judged by stock_service (its created_at is Redis's clock): the caller sends an
# age, never an instant of its own clock.
MAX_HOLD_AGE_SECONDS = 366 * 24 * 3600


def hold_path(product_id: int, order_id: int) -> str:
    return f"{PREFIX}/products/{product_id}/holds/{order_id}"


def holds_path(product_id: int) -> str:
    """Where a batch of the product's reserves is sent (POST, HoldBatch)."""
    return f"{PREFIX}/products/{product_id}/holds"


# Reserves of one batch at most: what order_service decides of a product at once, with room.
MAX_HOLD_BATCH = 256


class StockRegistration(RequestModel):
    """A product as stock_service needs it: registered at creation, re-sent on every change.

    `total` is needed to register a product; a change may leave it out (None) to keep the
    total stock_service has, which the seller may have set since (PUT .../stock): the sender
    of a change would otherwise overwrite it with the total it last read.
    """

    seller_id: Id
    price: Annotated[int, Field(ge=0, le=MAX_ID)]
    total: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = None
    sale_opens_at: UtcDatetimeIn | None = None
    sale_closes_at: UtcDatetimeIn | None = None
    limit_per_user: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None

    @model_validator(mode="after")
    def _window_in_order(self) -> StockRegistration:
        if (self.sale_opens_at is not None and self.sale_closes_at is not None
                and self.sale_closes_at <= self.sale_opens_at):
            raise ValueError("sale_closes_at must be after sale_opens_at")
        return self


class StockEntry(ApiModel):
    product_id: int
    seller_id: int
    price: int
    total: int
    held: int
    sold: int
    remaining: int
    sale_opens_at: UtcDatetime | None
    sale_closes_at: UtcDatetime | None
    limit_per_user: int | None
    sale_state: SaleState
    deleted: bool


class HoldRequest(RequestModel):
    user_id: Id
    quantity: Quantity
    # The order's payment deadline: past it (and a grace) an unpaid hold gives its units back
    # by itself, even if the order is never heard of again. Default: stock_service's setting.
    expires_at: UtcDatetimeIn | None = None


class Hold(ApiModel):
    order_id: int
    product_id: int
    user_id: int
    quantity: int
    unit_price: int
    state: HoldState
    expires_at: UtcDatetime
    created_at: UtcDatetime


class HoldAsk(HoldRequest):
    """One reserve of a batch: the PUT's body, its order id, and whether it is sent again (the
    X-Resent header of a PUT: its first answer was lost, so it is answered from what it did)."""

    order_id: Id
    resent: bool = False


class HoldBatch(RequestModel):
    holds: Annotated[list[HoldAsk], Field(min_length=1, max_length=MAX_HOLD_BATCH)]

    @model_validator(mode="after")
    def _one_ask_per_order(self) -> HoldBatch:
        if len({ask.order_id for ask in self.holds}) != len(self.holds):
            raise ValueError("each order_id at most once in a batch")
        return self


class HoldAnswer(ApiModel):
    """A batch's answer to one reserve: what the PUT would have answered, as its status with
    the hold (200) or the problem's code and detail (4xx, 503)."""

    order_id: int
    status: int
    hold: Hold | None = None
    code: str | None = None
    detail: str | None = None

    @classmethod
    def of(cls, order_id: int, answer: Hold | ProblemError) -> HoldAnswer:
        if isinstance(answer, Hold):
            return cls(order_id=order_id, status=200, hold=answer)
        return cls(order_id=order_id, status=answer.status, code=answer.code,
                   detail=answer.detail)


class HoldBatchAnswer(ApiModel):
    """One answer per reserve, in the batch's order."""

    answers: list[HoldAnswer]



class HoldPage(ApiModel):
    """Holds still `held`, oldest order id first; `next_after` pages on (null: no more)."""

    items: list[Hold]
    next_after: int | None
