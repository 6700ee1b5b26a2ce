"""The problems the payment routes answer with; `code` is what clients switch on."""

from __future__ import annotations

from shared.errors import InvalidState, NotFound, ServiceUnavailable, Unauthorized


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


class ProcessorUnavailable(ServiceUnavailable):
    title = "The card processor could not be reached"

    def __init__(self, detail: str = "The card processor did not answer; retry shortly.") -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class InvalidWebhookSignature(Unauthorized):
    code = "invalid_signature"
    title = "The webhook's signature or timestamp is not valid"
