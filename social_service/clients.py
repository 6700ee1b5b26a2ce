"""Typed clients of the other services social_service calls, over one pooled aiohttp session
that the lifespan opens (aiohttp rather than httpx: its pool holds up under concurrency).

Each call has a timeout, carries the request's X-Request-Id, and turns a service that is down,
slow or answering nonsense into 503 `upstream_unavailable`, never a hang or a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from redis.asyncio import Redis

from shared.contracts import internal_user_path
from shared.errors import ServiceUnavailable
from shared.request_context import REQUEST_ID_HEADER, current_request_id

# Below uvicorn's keep-alive timeout (5 s): an idle pooled connection is dropped here first,
# not closed by the other side under a request.
KEEPALIVE_SECONDS = 4.0


@asynccontextmanager
async def open_http_session(*, timeout_seconds: float, max_connections: int = 64
                            ) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=KEEPALIVE_SECONDS)
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


def request_headers() -> dict[str, str]:
    request_id = current_request_id()
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


class UserDirectory:
    """Whether a user exists, asked of user_service and cached in Redis for a while."""

    def __init__(self, *, http: aiohttp.ClientSession, base_url: str, redis: Redis,
                 found_ttl_seconds: int, missing_ttl_seconds: int) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.redis = redis
        self.found_ttl_seconds = found_ttl_seconds
        self.missing_ttl_seconds = missing_ttl_seconds

    @staticmethod
    def cache_key(user_id: int) -> str:
        return f"social:user-exists:{user_id}"

    async def exists(self, user_id: int) -> bool:
        key = self.cache_key(user_id)
        cached = await self.redis.get(key)
        if cached is not None:
            return bool(cached == "1")
        found = await self._ask(user_id)
        await self.redis.set(key, "1" if found else "0",
                             ex=self.found_ttl_seconds if found else self.missing_ttl_seconds)
        return found

    async def _ask(self, user_id: int) -> bool:
        url = self.base_url + internal_user_path(user_id)
        try:
            async with self.http.get(url, headers=request_headers()) as response:
                await response.read()
                if response.status in (200, 404):
                    return response.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailable("The user directory did not answer.") from exc
        raise ServiceUnavailable(f"The user directory answered {response.status}.")
