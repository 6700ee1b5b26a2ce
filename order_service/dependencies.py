"""What order_service's lifespan builds once (datastores, clients of stock_service and
payment_service, the id allocator, the Idempotency-Key store and the orders service itself)
and the dependencies that hand it to requests.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from order_service.orders.service import OrdersService
from order_service.settings import Settings
from shared.dependencies import AppResources, resources_of
from shared.lifespan import Datastores


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    # Stateless between requests but for its caches: built once, nothing per request.
    orders: OrdersService


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_orders_service(resources: AppResources) -> OrdersService:
    return resources_of(resources, Resources).orders


OrdersServiceDep = Annotated[OrdersService, Depends(get_orders_service)]
