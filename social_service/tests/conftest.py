"""social_service fixtures: its migrated schema, a real user_service on loopback (the follow
routes ask it whether users exist), the app in-process, and sessions for the factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from shared.db import create_sessionmaker
from shared.testing.apps import RunningApp, running_app, service_app
from shared.testing.datastores import forget_redis_keys, fresh_database
from shared.testing.net import ThreadedServer
from social_service.app import create_app
from social_service.settings import Settings

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def database_url() -> str:
    return fresh_database("social_service", "preorder_social")


@pytest.fixture(scope="session")
def user_database_url() -> str:
    # A user schema of social's own: user_service's tests rebuild theirs while this one serves.
    return fresh_database("user_service", "preorder_user", "social")


@pytest.fixture(scope="session")
def user_service_url(user_database_url: str, redis_url: str, signing_key_pem: str) -> Iterator[str]:
    app = service_app("user_service", database_url=user_database_url, redis_url=redis_url,
                      database_pool_size=2, jwt_private_key=signing_key_pem, log_level="WARNING",
                      # Its loops stay out of other tests on the same Redis database: the mail
                      # loop out of user_service's, the revocation watch out of the gateway's
                      # (it would publish the epoch key a test has just deleted).
                      mail_delayed_interval_seconds=3600,
                      revocation_watch_interval_seconds=3600)
    server = ThreadedServer(app).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def make_settings(database_url: str, redis_url: str, user_service_url: str) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "redis_url": redis_url,
            "database_pool_size": 10,
            "user_service_url": user_service_url,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
async def service(make_settings: SettingsFactory, redis: Any) -> AsyncIterator[RunningApp]:
    # `redis` is requested so the test database is flushed before the first request. Timelines
    # and cached users are keyed by ids a fresh schema hands out again, and a flush that came
    # earlier in the run (another suite asked first) left what the end-to-end system wrote.
    forget_redis_keys(make_settings().redis_url, "social:")
    async with running_app(create_app(make_settings()), base_url="http://social") as app:
        yield app


@pytest.fixture(scope="session")
async def user_db_engine(user_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(user_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def user_session(user_db_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """For accounts in the user_service that the app under test asks."""
    async with create_sessionmaker(user_db_engine)() as db:
        yield db
