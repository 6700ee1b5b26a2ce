"""stock_service fixtures: a migrated schema, the app in-process with its lifespan, and unique
product ids so tests never share a product."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from shared.testing.apps import RunningApp, running_app
from shared.testing.datastores import fresh_database
from stock_service.app import create_app
from stock_service.dependencies import Resources
from stock_service.settings import Settings

SettingsFactory = Callable[..., Settings]
# Far apart per run, so a second run against the same Redis database never meets the first.
_ids: Iterator[int] = itertools.count(int.from_bytes(os.urandom(3), "big") * 1000 + 1)


def new_id() -> int:
    return next(_ids)


@pytest.fixture(scope="session")
def database_url() -> str:
    return fresh_database("stock_service", "preorder_stock")


@pytest.fixture(scope="session")
def make_settings(database_url: str, redis_url: str) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test", "database_url": database_url, "redis_url": redis_url,
            "log_level": "WARNING",
            # The loops stay out of the way; tests that need a round run one themselves.
            "reconcile_interval_seconds": 3600, "expired_hold_interval_seconds": 3600,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
async def service(make_settings: SettingsFactory, redis: Redis) -> AsyncIterator[RunningApp]:
    # `redis` is requested so the test database is flushed before the app starts.
    async with running_app(create_app(make_settings())) as app:
        yield app


@pytest.fixture(scope="session")
def resources(service: RunningApp) -> Resources:
    return service.resources_as(Resources)
