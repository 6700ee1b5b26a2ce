"""payment_service application: lifespan owns the engine and Redis; routers mounted here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from payment_service.settings import Settings, get_settings
from shared.app import create_service_app
from shared.health import check_database, check_redis
from shared.lifespan import datastores
from shared.logging import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("payment_service", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with datastores(app, settings):
            yield

    return create_service_app(
        service="payment_service",
        title="Payment service",
        lifespan=lifespan,
        routers=[],
        readiness={"database": check_database, "redis": check_redis},
    )
