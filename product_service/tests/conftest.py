"""product_service fixtures: its migrated schema, a real stock_service on loopback (every
product change is registered there), the app in-process, and sessions for the factories."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from product_service.app import create_app
from product_service.dependencies import Resources
from product_service.settings import Settings
from shared.testing.apps import RunningApp, running_app, service_app
from shared.testing.datastores import fresh_database
from shared.testing.net import ThreadedServer

SettingsFactory = Callable[..., Settings]


async def _start_ids_at(url: str, first_id: int) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.exec_driver_sql(f"ALTER TABLE products AUTO_INCREMENT = {first_id}")
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url() -> str:
    url = fresh_database("product_service", "preorder_product")
    # Product ids far from those of other suites sharing this Redis database (the end-to-end
    # system hands out 1, 2, ... on its fresh schemas), and from this suite's last run:
    # stock_service keys its live state by product id.
    asyncio.run(_start_ids_at(url, random.randrange(10**12, 10**14)))
    return url


@pytest.fixture(scope="session")
def stock_database_url() -> str:
    # A stock schema of product's own: stock_service's tests rebuild theirs while this one serves.
    return fresh_database("stock_service", "preorder_stock", "product")


# The app, its stock_service and their connections live as long as this package's tests (not
# the whole session): MariaDB's 151 connections are shared with every other suite on the machine.
@pytest.fixture(scope="package")
def stock_service_url(stock_database_url: str, redis_url: str) -> Iterator[str]:
    app = service_app("stock_service", database_url=stock_database_url, redis_url=redis_url,
                      log_level="WARNING", database_pool_size=3, database_read_pool_size=2,
                      reconcile_interval_seconds=3600, expired_hold_interval_seconds=3600)
    server = ThreadedServer(app).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="package")
def make_settings(database_url: str, redis_url: str, stock_service_url: str) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test", "database_url": database_url, "redis_url": redis_url,
            "stock_service_url": stock_service_url, "log_level": "WARNING",
            "database_pool_size": 3, "database_read_pool_size": 3,
            # The settler stays out of the way; tests that need a round run one themselves.
            "pending_settle_interval_seconds": 3600,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="package")
async def service(make_settings: SettingsFactory, redis: Redis) -> AsyncIterator[RunningApp]:
    # `redis` is requested so the test database is flushed before the app starts.
    async with running_app(create_app(make_settings()), base_url="http://product") as app:
        yield app


@pytest.fixture(scope="package")
def resources(service: RunningApp) -> Resources:
    return service.resources_as(Resources)
