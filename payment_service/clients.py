"""The typed client of order_service (shared.internal.orders), over shared.http's pooled session
built in the lifespan."""

from __future__ import annotations

from payment_service.payments.errors import OrderNotFound, OrderNotPayable, OrdersUnavailable
from shared.deadline import Deadline
from shared.http import ServiceCallFailed, ServiceClient, ServiceResponse
from shared.internal.orders import (
    PaymentLease,
    PaymentLeaseRequest,
    PaymentResult,
    order_path,
)


class OrdersClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def lease(self, order_id: int, user_id: int, *,
                    deadline: Deadline | None = None) -> PaymentLease:
        """The right to charge the order now, or OrderNotFound / OrderNotPayable."""
        response = await self._call(order_path(order_id, "payment-lease"),
                                    PaymentLeaseRequest(user_id=user_id), deadline)
        if response.status == 200:
            return PaymentLease.model_validate(response.body)
        detail = response.body.get("detail") if isinstance(response.body, dict) else None
        if response.status == 404:
            raise OrderNotFound(detail)
        if response.status == 409:
            raise OrderNotPayable(detail)
        raise OrdersUnavailable()

    async def tell(self, order_id: int, kind: str, *, payment_id: int, lease_token: str,
                   deadline: Deadline | None = None) -> bool:
        """Tells the order its payment's outcome ('paid' or 'failed'). True if the order took
        it; False if the order can no longer be paid (the charge must then be voided)."""
        action = "paid" if kind == "paid" else "payment-failed"
        response = await self._call(order_path(order_id, action),
                                    PaymentResult(payment_id=payment_id, lease_token=lease_token),
                                    deadline)
        if response.status == 200:
            return True
        if response.status in (404, 409):
            return False
        raise OrdersUnavailable()

    async def _call(self, path: str, body: PaymentLeaseRequest | PaymentResult,
                    deadline: Deadline | None) -> ServiceResponse:
        """`deadline`: the call ends by then, or by the client's own timeout if sooner."""
        default = self.client.timeout_seconds
        timeout = deadline.cap(default or deadline.left()) if deadline else None
        try:
            return await self.client.request("POST", path, json_body=body.model_dump(mode="json"),
                                             timeout=timeout)
        except ServiceCallFailed as failed:
            raise OrdersUnavailable() from failed
