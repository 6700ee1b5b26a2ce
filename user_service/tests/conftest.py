"""user_service fixtures: one migrated schema, settings pointing at the test servers, the app
in-process, and a session for the factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from shared.testing.apps import RunningApp
from shared.testing.datastores import fresh_database
from shared.testing.mail import MailSink
from user_service.settings import Settings
from user_service.tests.helpers import running_app

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def database_url() -> str:
    return fresh_database("user_service", "preorder_user")


@pytest.fixture(scope="session")
def make_settings(
    database_url: str, redis_url: str, mail_sink: MailSink, signing_key_pem: str
) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "redis_url": redis_url,
            "database_pool_size": 5,
            "jwt_private_key": signing_key_pem,
            "smtp_host": mail_sink.host,
            "smtp_port": mail_sink.port,
            "smtp_timeout_seconds": 2,
            "log_level": "WARNING",
            # These apps share the suite's Redis database with the end-to-end system's own
            # user_service (another schema): only that one may answer a FLUSHDB there.
            "revocation_watch_interval_seconds": 3600,
            # Likewise the mail guard's queue (auth:mail:*): a loop of an app on another schema
            # would take a waiting address and find no account for it. A test that needs the
            # loop runs an app of its own with a short interval.
            "mail_delayed_interval_seconds": 3600,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
async def service(make_settings: SettingsFactory, redis: Any) -> AsyncIterator[RunningApp]:
    # `redis` is requested so the test database is flushed before the first request.
    async with running_app(make_settings()) as app:
        yield app
