"""UserDirectory against a real user_service on loopback: answers, their caching, and what a
down service becomes (503, never a 500 or a hang)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ServiceUnavailable
from shared.http import service_client
from shared.testing.identity import new_user_id, signer
from shared.testing.net import free_port
from social_service.clients import UserDirectory
from social_service.tests.factories import make_account

Directories = Callable[[str], Awaitable[UserDirectory]]


@pytest.fixture
async def directory(redis: Redis) -> AsyncIterator[Directories]:
    """A UserDirectory asking the user_service at a URL, over a signed client of the test key."""
    async with AsyncExitStack() as stack:
        async def open_directory(url: str) -> UserDirectory:
            client = await stack.enter_async_context(service_client(
                "user_service", url, timeout_seconds=2,
                signer=signer("social_service")))
            return UserDirectory(client=client, redis=redis, found_ttl_seconds=300,
                                 missing_ttl_seconds=5)
        yield open_directory


async def test_an_existing_user_is_found_and_remembered(
    directory: Directories, redis: Redis, user_service_url: str, user_session: AsyncSession
) -> None:
    user_id = await make_account(user_session)
    users = await directory(user_service_url)
    assert await users.exists(user_id)
    assert await redis.get(UserDirectory.cache_key(user_id)) == "1"
    assert 0 < await redis.ttl(UserDirectory.cache_key(user_id)) <= 300


async def test_a_missing_user_is_remembered_briefly(
    directory: Directories, redis: Redis, user_service_url: str
) -> None:
    user_id = new_user_id()
    assert not await (await directory(user_service_url)).exists(user_id)
    assert await redis.get(UserDirectory.cache_key(user_id)) == "0"
    assert 0 < await redis.ttl(UserDirectory.cache_key(user_id)) <= 5


async def test_a_cached_answer_is_used_without_asking(
    directory: Directories, redis: Redis
) -> None:
    user_id = new_user_id()
    await redis.set(UserDirectory.cache_key(user_id), "1", ex=60)
    # Nothing listens on this port: only the cache can have answered.
    assert await (await directory(f"http://127.0.0.1:{free_port()}")).exists(user_id)


async def test_a_service_that_does_not_answer_is_503(
    directory: Directories, redis: Redis
) -> None:
    users = await directory(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServiceUnavailable):
        await users.exists(new_user_id())
