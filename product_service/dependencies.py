"""What product_service's lifespan builds once (datastores, the stock client, the detail cache
and the reader of the routes that only read), and the dependencies that hand it and the
per-request services to the routes.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from product_service.clients import StockClient
from product_service.products.cache import DetailInvalidations, ProductDetails
from product_service.products.service import ProductsReader, ProductsService
from product_service.settings import Settings
from shared.dependencies import AppResources, SessionDep, resources_of
from shared.lifespan import Datastores


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    stock: StockClient
    details: ProductDetails
    # Stateless between requests: built once, so the hot reads allocate nothing for it.
    reader: ProductsReader


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_products_reader(resources: AppResources) -> ProductsReader:
    return resources_of(resources, Resources).reader


async def get_detail_invalidations(resources: ResourcesDep) -> AsyncIterator[DetailInvalidations]:
    """Invalidates the request's changed products once its transaction committed, before the
    response is sent (a client that changed a product reads the change back at once). Taken
    before SessionDep: FastAPI closes dependencies in reverse order, so the session commits
    first; on an error nothing was committed and nothing is invalidated."""
    invalidations = DetailInvalidations(resources.details)
    yield invalidations
    await invalidations.apply()


# scope="function", like SessionDep: run before the response is sent, not after.
DetailInvalidationsDep = Annotated[
    DetailInvalidations, Depends(get_detail_invalidations, scope="function")]


async def get_products_service(invalidations: DetailInvalidationsDep, session: SessionDep,
                               resources: ResourcesDep) -> ProductsService:
    return ProductsService(session=session, stock=resources.stock, invalidations=invalidations)


ProductsReaderDep = Annotated[ProductsReader, Depends(get_products_reader)]
ProductsServiceDep = Annotated[ProductsService, Depends(get_products_service)]
