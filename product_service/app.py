"""product_service application: the lifespan builds its Resources (datastores, the pooled
client of stock_service, the detail cache) and runs the settler of pending products; routers
are mounted here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from product_service.clients import StockClient
from product_service.dependencies import Resources
from product_service.products.cache import ProductDetails
from product_service.products.router import router as products_router
from product_service.products.service import ProductsReader
from product_service.products.tasks import settle_pending_products_periodically
from product_service.settings import Settings, get_settings
from shared.app import create_service_app
from shared.http import service_client
from shared.lifespan import open_datastores
from shared.logging import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("product_service", settings.log_level)

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        async with (
            open_datastores(settings) as datastores,
            service_client("stock_service", settings.stock_service_url,
                           signer=settings.identity_signer("product_service"),
                           timeout_seconds=settings.stock_service_timeout_seconds,
                           hosts=settings.service_hosts) as http,
        ):
            stock = StockClient(http)
            details = ProductDetails(datastores.redis, datastores.reads,
                                     ttl_seconds=settings.detail_cache_seconds)
            settler = asyncio.create_task(settle_pending_products_periodically(
                datastores.sessionmaker, stock,
                older_than=timedelta(seconds=settings.pending_settle_after_seconds),
                interval_seconds=settings.pending_settle_interval_seconds))
            try:
                yield Resources(settings=settings, datastores=datastores, stock=stock,
                                details=details,
                                reader=ProductsReader(datastores.reads, details))
            finally:
                settler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await settler
    return create_service_app(
        service="product_service",
        title="Product service",
        resources=open_resources,
        routers=[products_router],
    )
