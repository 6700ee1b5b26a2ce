"""Typed clients of the other services product_service calls, over shared.http's pooled client
that the lifespan opens: stock_service's internal API for product registrations
(shared.internal.stock is the contract).

A call that cannot be made (down, slow, 5xx, garbage) raises ServiceCallFailed; a refusal
(4xx) raises stock_service's own problem, to be answered as it is.
"""

from __future__ import annotations

import logging

from product_service.products.errors import forwarded_problem
from shared.http import ServiceClient
from shared.internal.stock import StockEntry, StockRegistration, product_path

logger = logging.getLogger("product_service.clients")


class StockClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def register(self, product_id: int, registration: StockRegistration) -> StockEntry:
        """Creates the product's stock, or applies a change to it (total None: keep it)."""
        response = await self.client.request(
            "PUT", product_path(product_id),
            json_body=registration.model_dump(mode="json", exclude_none=False))
        if response.status != 200:
            raise forwarded_problem(response.status, response.body)
        return StockEntry.model_validate(response.body)

    async def entry(self, product_id: int) -> StockEntry | None:
        """stock_service's entry for the product (deleted ones included), None if it has none."""
        response = await self.client.request("GET", product_path(product_id))
        if response.status == 404:
            return None
        if response.status != 200:
            raise forwarded_problem(response.status, response.body)
        return StockEntry.model_validate(response.body)

    async def unregister(self, product_id: int) -> None:
        """No more orders for the product (204 whether or not stock_service knew it)."""
        response = await self.client.request("DELETE", product_path(product_id))
        if response.status != 204:
            raise forwarded_problem(response.status, response.body)

    async def unregister_quietly(self, product_id: int) -> bool:
        """Best effort, for cleaning up after a call whose outcome is unknown: False if it
        could not be done (the settler tries again later)."""
        try:
            await self.unregister(product_id)
        except Exception:
            logger.warning("could not withdraw a product from stock_service",
                           extra={"product_id": product_id}, exc_info=True)
            return False
        return True
