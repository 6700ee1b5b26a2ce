"""Typed clients of the services order_service calls (stock_service, payment_service), over
shared.http's pooled aiohttp sessions built in the lifespan. A call that cannot be made, or is
answered with a 5xx, raises StockUnavailable / ServiceCallFailed; a refusal raises the
contract's problem (sold_out, ...), as the client of this API would see it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from order_service.orders.errors import StockUnavailable
from shared.errors import ProblemError
from shared.http import RESENT_HEADER, ServiceCallFailed, ServiceClient, ServiceResponse
from shared.internal.payments import NO_CHARGE, PaymentView, by_order_path
from shared.internal.stock import (
    HELD_HOLDS_PATH,
    REFUSALS,
    Hold,
    HoldPage,
    hold_path,
    refusal_code,
)
from shared.schemas import to_utc_z

# What became of a paid order's hold: sold, too late (its units went back), or never there.
CommitOutcome = Literal["committed", "released", "missing"]


def _refusal(response: ServiceResponse) -> ProblemError:
    """The stock contract's problem for a 4xx answer (the detail passed on)."""
    code = refusal_code(response.code)
    detail = response.body.get("detail") if isinstance(response.body, dict) else None
    if code is not None:
        return REFUSALS[code](detail)
    return StockUnavailable(f"stock_service answered {response.status} {response.code}.")


class StockClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def reserve(self, *, product_id: int, order_id: int, user_id: int, quantity: int,
                      expires_at: datetime, timeout: float | None = None,
                      resent: bool = False) -> Hold:
        """`timeout`: what is left of the order's time budget (the client's default if None).
        `resent`: this order id may hold units already (an earlier decision of the same place
        died after reserving): stock_service answers its hold as it is, never from its sold-out
        memory."""
        # As HoldRequest reads it (times in ISO-8601 UTC with a Z; ours are naive UTC).
        body = {"user_id": user_id, "quantity": quantity, "expires_at": to_utc_z(expires_at)}
        response = await self._call("PUT", hold_path(product_id, order_id), body, timeout,
                                    headers={RESENT_HEADER: "1"} if resent else None)
        if response.status == 200:
            return Hold.model_validate(response.body)
        if response.status == 503:
            raise StockUnavailable()
        raise _refusal(response)

    async def release(self, *, product_id: int, order_id: int) -> bool:
        """True once the units are back (or there never was a hold to give back)."""
        response = await self._call("POST", hold_path(product_id, order_id) + "/release")
        return response.status in (200, 404)

    async def commit(self, *, product_id: int, order_id: int) -> CommitOutcome:
        """'committed', 'released' (too late: the units went back) or 'missing'."""
        response = await self._call("POST", hold_path(product_id, order_id) + "/commit")
        if response.status == 200:
            return "committed"
        if response.status == 409:
            return "released"
        if response.status == 404:
            return "missing"
        raise StockUnavailable(f"stock_service answered {response.status} to a commit.")

    async def held_holds(self, *, older_than: timedelta, after: int, limit: int) -> HoldPage:
        """Holds still held at least `older_than` old by stock_service's clock."""
        path = (f"{HELD_HOLDS_PATH}?older_than_seconds={older_than.total_seconds()}"
                f"&after={after}&limit={limit}")
        response = await self._call("GET", path)
        if response.status != 200:
            raise StockUnavailable(f"stock_service answered {response.status} to a hold list.")
        return HoldPage.model_validate(response.body)

    async def _call(self, method: str, path: str, body: object = None,
                    timeout: float | None = None,
                    headers: dict[str, str] | None = None) -> ServiceResponse:
        try:
            return await self.client.request(method, path, json_body=body, headers=headers,
                                             timeout=timeout)
        except ServiceCallFailed as failed:
            raise StockUnavailable() from failed


class PaymentsClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def latest_for_order(self, order_id: int) -> PaymentView | None:
        response = await self.client.request("GET", by_order_path(order_id))
        if response.status == 404:
            return None
        if response.status != 200:
            raise ServiceCallFailed(self.client.name, f"answered {response.status}")
        return PaymentView.model_validate(response.body)

    async def refund(self, order_id: int) -> bool:
        """True once the order's charge is refunded, or payment_service states that the order
        has no charge (NO_CHARGE); any other answer, a bare 404 included, is asked again later."""
        response = await self.client.request("POST", by_order_path(order_id, "refund"))
        return response.status == 200 or (response.status == 404 and response.code == NO_CHARGE)
