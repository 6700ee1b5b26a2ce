"""payment_service application: the lifespan builds its Resources; routers are mounted here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from payment_service.dependencies import Resources
from payment_service.settings import Settings, get_settings
from shared.app import create_service_app
from shared.lifespan import open_datastores
from shared.logging import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("payment_service", settings.log_level)

    @asynccontextmanager
    async def open_resources() -> AsyncIterator[Resources]:
        async with open_datastores(settings) as datastores:
            yield Resources(settings=settings, datastores=datastores)

    return create_service_app(
        service="payment_service",
        title="Payment service",
        resources=open_resources,
        routers=[],
    )
