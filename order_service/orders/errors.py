"""The problems the order routes answer with; `code` is what clients switch on. A reserve's
refusals (sold_out, sale_not_open, ...) are the stock contract's, passed on as they are."""

from __future__ import annotations

from shared.errors import Conflict, InvalidState, NotFound, ServiceUnavailable, TooManyRequests


class OrderNotFound(NotFound):
    title = "Order not found"


class OrderNotPayable(InvalidState):
    title = "The order cannot be paid now"


class OrderNotCancellable(InvalidState):
    title = "The order cannot be cancelled in its state"


class UnpaidOrderExists(Conflict):
    """One unpaid order per buyer per product, whatever the product's limit per user."""

    code = "unpaid_order_exists"
    title = "An unpaid order for this product exists"


class StockUnavailable(ServiceUnavailable):
    title = "Stock could not be reserved right now"

    def __init__(self, detail: str = "The stock service did not answer; retry shortly.") -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class HoldGone(StockUnavailable):
    """A resent reserve found no hold under its order id (shared.internal.stock.HOLD_NOT_FOUND):
    for the place taking a dead decision's hold over, no hold to take; for anyone else,
    stock_service unable to decide."""


class TooManyWaiting(StockUnavailable):
    """A product's reserves queued past the wait (InFlightLimit.wait_seconds), in the route or
    in the layer in front of it: one answer for both."""

    def __init__(self) -> None:
        super().__init__("Too many orders for this product are waiting on stock_service; "
                         "retry shortly.")


class LineFull(TooManyRequests):
    """The product's line holds its longest (ORDER_LINE_MAX_WAITING): no place for now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("The line for this product is full; try again later.",
                         retry_after=retry_after)


class TicketNotFound(NotFound):
    title = "Ticket not found"
