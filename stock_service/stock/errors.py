"""The problems the stock routes answer with; `code` is what clients switch on. The refusals of
a reserve are the internal contract's (shared.internal.stock), re-exported here."""

from __future__ import annotations

from shared.errors import Forbidden, InvalidState, NotFound, ServiceUnavailable
from shared.internal.stock import (
    HOLD_NOT_FOUND,
    ProductNotFound,
    PurchaseLimitExceeded,
    SaleClosed,
    SaleNotOpen,
    SoldOut,
)


class HoldNotFound(NotFound):
    # Not the reserve's refusal `not_found` (the product unknown): order_service reads that
    # code back as the product's, and a buyer of a product on sale was answered 404.
    code = HOLD_NOT_FOUND
    title = "No hold for this order"


class HoldReleased(InvalidState):
    title = "The hold was released; its units are no longer held"


class SaleStarted(InvalidState):
    title = "The sale has opened; its stock and window are fixed"


class NotTheSeller(Forbidden):
    title = "Only the product's seller may change its stock"


class StockRebuilding(ServiceUnavailable):
    """The product's live state is being rebuilt from the ledger: no decision until it is."""

    title = "Stock is being rebuilt"

    def __init__(self) -> None:
        super().__init__("The product's live stock is being rebuilt; retry in a moment.",
                         headers={"Retry-After": "1"})


__all__ = ["HoldNotFound", "HoldReleased", "NotTheSeller", "ProductNotFound",
           "PurchaseLimitExceeded", "SaleClosed", "SaleNotOpen", "SaleStarted", "SoldOut",
           "StockRebuilding"]
