"""The project's pytest plugin, registered by the root conftest.py: the fixtures every test
package may use.

- `mail_sink`: a real SMTP server on loopback; `redis_url` and `redis`: the test Redis database
  (flushed once, when first asked for).
- `db_engine` and `session`: on the schema the package's conftest names as `database_url`
  (one engine per schema for the whole run); commit in a test to let the app under test see
  what a factory made.
- `client`: the HTTP client of the app the package's conftest runs as `service` (a RunningApp).
- `signing_key_pem`: an Ed25519 private key (PEM) for the user_service a test runs.
- `sale`, `http` and `engines`: the multi-process sale system (stock, order, payment; sale.py).

The environment is `test` for everything the tests build, in this process and in the service
processes they start (which inherit it): settings default to production otherwise. Every app has
an identity key of this run (shared.testing.identity signs with them), and all know the public
keys.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from shared.db import create_sessionmaker
from shared.testing.apps import RunningApp
from shared.testing.datastores import TEST_PUBSUB_PREFIX, TEST_REDIS_URL
from shared.testing.identity import TEST_IDENTITY_ENVIRONMENT
from shared.testing.mail import MailSink
from shared.testing.sale import engines, http, sale

__all__ = ["client", "db_engine", "engines", "http", "mail_sink", "redis", "redis_url", "sale",
           "session", "signing_key_pem"]

os.environ["APP_ENV"] = "test"
os.environ.update(TEST_IDENTITY_ENVIRONMENT)
# Pub/sub channels are global across Redis databases: this run's own, so two suites on one
# Redis never hear each other (every process the tests start inherits it).
os.environ["PUBSUB_PREFIX"] = TEST_PUBSUB_PREFIX


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def _engines_by_url() -> AsyncIterator[dict[str, AsyncEngine]]:
    by_url: dict[str, AsyncEngine] = {}
    yield by_url
    for engine in by_url.values():
        await engine.dispose()


# db_engine and client are per test (cheap lookups), never wider: a wider fixture here would be
# computed once for the first package that asks and handed to every other package as well,
# since each package's conftest gives `database_url` and `service` its own meaning.
@pytest.fixture
def db_engine(database_url: str, _engines_by_url: dict[str, AsyncEngine]) -> AsyncEngine:
    engine = _engines_by_url.get(database_url)
    if engine is None:
        engine = _engines_by_url[database_url] = create_async_engine(database_url)
    return engine


@pytest.fixture
async def session(db_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """For factories and checks; commit to let the app under test see what was made."""
    async with create_sessionmaker(db_engine)() as db:
        yield db


@pytest.fixture
def client(service: RunningApp) -> httpx.AsyncClient:
    return service.client


@pytest.fixture(scope="session")
def signing_key_pem() -> str:
    """The key a user_service under test signs access tokens with (new each run)."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
