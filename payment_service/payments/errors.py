"""The problems the payment routes answer with; `code` is what clients switch on."""

from __future__ import annotations

from shared.errors import InvalidState, NotFound, ServiceUnavailable, Unauthorized
from shared.internal.payments import NO_CHARGE


class PaymentNotFound(NotFound):
    title = "Payment not found"


class NoCharge(NotFound):
    """The order has no payment holding a charge, nor one that may yet: nothing to give back."""

    code = NO_CHARGE
    title = "The order has no charge to refund"


class PaymentPending(InvalidState):
    code = "payment_pending"
    title = "The order's payment is still being decided"


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
