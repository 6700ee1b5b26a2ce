"""Fixtures every test package may use: a real SMTP sink and the test Redis database.

The environment is `test` for everything the tests build, in this process and in the service
processes they start (which inherit it): settings default to production otherwise. They share one
identity signing key, which shared.testing.identity.signed_identity_headers signs with.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from shared.testing.datastores import TEST_REDIS_URL
from shared.testing.identity import TEST_IDENTITY_SIGNING_KEY
from shared.testing.mail import MailSink

os.environ["APP_ENV"] = "test"
os.environ["IDENTITY_SIGNING_KEY"] = TEST_IDENTITY_SIGNING_KEY


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
