"""What stock_service's lifespan builds once (datastores, Lua scripts, the live-state keeper,
admission, and the two parts of stock: holds and the catalog) and the dependencies that hand it
to requests.

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
from stock_service.stock.admission import StockAdmission
from stock_service.stock.catalog import CatalogService
from stock_service.stock.holds import HoldService
from stock_service.stock.live import LiveStock
from stock_service.stock.rebuild import LiveState
from stock_service.stock.scripts import StockScripts


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    scripts: StockScripts
    live: LiveState
    # Stateless between requests but for their memories: built once, so the sale's hot path
    # allocates nothing for them.
    admission: StockAdmission
    holds: HoldService
    catalog: CatalogService
    live_stock: LiveStock


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_hold_service(resources: AppResources) -> HoldService:
    return resources_of(resources, Resources).holds


async def get_catalog_service(resources: AppResources) -> CatalogService:
    return resources_of(resources, Resources).catalog


HoldServiceDep = Annotated[HoldService, Depends(get_hold_service)]
CatalogServiceDep = Annotated[CatalogService, Depends(get_catalog_service)]
