"""payment_service's internal API, for order_service:

    GET  /internal/payments/by-order/{order_id}   -> PaymentView (the order's latest payment)
    POST /internal/payments/by-order/{order_id}/refund  -> PaymentView

order_service asks for an order's latest payment before it expires an order whose payment
lease ran out (a payment that succeeded makes it paid instead), and asks for the refund when a
paid order is cancelled. Both idempotent. A refund answers 200 once the charge is given back,
404 `no_charge` only when no payment of the order holds or may yet hold a charge, and 409
`payment_pending` while one is still being decided.
"""

from __future__ import annotations

from typing import Literal

from shared.schemas import ApiModel

PREFIX = "/internal/payments"
NO_CHARGE = "no_charge"

PaymentStatus = Literal["pending", "succeeded", "failed", "refunded"]


def by_order_path(order_id: int, action: str = "") -> str:
    return f"{PREFIX}/by-order/{order_id}" + (f"/{action}" if action else "")


class PaymentView(ApiModel):
    id: int
    order_id: int
    status: PaymentStatus
    lease_token: str
