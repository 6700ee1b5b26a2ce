"""UserDirectory against a real user_service on loopback: answers, their caching, and what a
down service becomes (503, never a 500 or a hang)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ServiceUnavailable
from shared.testing.net import free_port
from social_service.clients import UserDirectory, open_http_session
from social_service.tests.factories import make_account, new_user_id


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with open_http_session(timeout_seconds=2) as session:
        yield session


def directory(http: aiohttp.ClientSession, redis: Redis, url: str) -> UserDirectory:
    return UserDirectory(http=http, base_url=url, redis=redis, found_ttl_seconds=300,
                         missing_ttl_seconds=5)


async def test_an_existing_user_is_found_and_remembered(
    http: aiohttp.ClientSession, redis: Redis, user_service_url: str, user_session: AsyncSession
) -> None:
    user_id = await make_account(user_session)
    users = directory(http, redis, user_service_url)
    assert await users.exists(user_id)
    assert await redis.get(UserDirectory.cache_key(user_id)) == "1"
    assert 0 < await redis.ttl(UserDirectory.cache_key(user_id)) <= 300


async def test_a_missing_user_is_remembered_briefly(
    http: aiohttp.ClientSession, redis: Redis, user_service_url: str
) -> None:
    user_id = new_user_id()
    assert not await directory(http, redis, user_service_url).exists(user_id)
    assert await redis.get(UserDirectory.cache_key(user_id)) == "0"
    assert 0 < await redis.ttl(UserDirectory.cache_key(user_id)) <= 5


async def test_a_cached_answer_is_used_without_asking(
    http: aiohttp.ClientSession, redis: Redis
) -> None:
    user_id = new_user_id()
    await redis.set(UserDirectory.cache_key(user_id), "1", ex=60)
    # Nothing listens on this port: only the cache can have answered.
    assert await directory(http, redis, f"http://127.0.0.1:{free_port()}").exists(user_id)


async def test_a_service_that_does_not_answer_is_503(
    http: aiohttp.ClientSession, redis: Redis
) -> None:
    users = directory(http, redis, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnavailable):
        await users.exists(new_user_id())
