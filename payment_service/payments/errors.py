"""The problems the payment routes answer with; `code` is what clients switch on."""

from __future__ import annotations

from shared.errors import InvalidState, NotFound, ServiceUnavailable


class PaymentNotFound(NotFound):
    title = "Payment not found"


class OrderNotFound(NotFound):
    title = "Order not found"


class OrderNotPayable(InvalidState):
    title = "The order cannot be paid now"


class OrdersUnavailable(ServiceUnavailable):
    title = "Orders could not be reached"

    def __init__(self) -> None:
        super().__init__("The order service did not answer; retry shortly.",
                         headers={"Retry-After": "1"})
