"""What stock_service's lifespan builds once (datastores, Lua scripts, the live-state keeper and
the stock service itself) and the dependencies that hand it to requests.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from shared.dependencies import AppResources, resources_of
from shared.lifespan import Datastores
from stock_service.settings import Settings
from stock_service.stock.rebuild import LiveState
from stock_service.stock.scripts import StockScripts
from stock_service.stock.service import StockService


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    scripts: StockScripts
    live: LiveState
    # Stateless between requests: built once, so the sale's hot path allocates nothing for it.
    stock: StockService


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_stock_service(resources: AppResources) -> StockService:
    return resources_of(resources, Resources).stock


StockServiceDep = Annotated[StockService, Depends(get_stock_service)]
