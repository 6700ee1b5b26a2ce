"""The problems the stock routes answer with; `code` is what clients switch on."""

from __future__ import annotations

from shared.errors import Conflict, Forbidden, InvalidState, NotFound, ServiceUnavailable


class ProductNotFound(NotFound):
    title = "Product not found"


class HoldNotFound(NotFound):
    title = "No hold for this order"


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
