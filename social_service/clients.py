"""Typed clients of the other services social_service calls, over shared.http's pooled, signed
client built in the lifespan. A service that is down, slow or answering nonsense becomes 503
`upstream_unavailable`, never a hang or a 500.
"""

from __future__ import annotations

from redis.asyncio import Redis

from shared.contracts import internal_user_path
from shared.errors import ServiceUnavailable
from shared.http import ServiceCallFailed, ServiceClient


class UserDirectory:
    """Whether a user exists, asked of user_service and cached in Redis for a while."""

    def __init__(self, *, client: ServiceClient, redis: Redis,
                 found_ttl_seconds: int, missing_ttl_seconds: int) -> None:
        self.client = client
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
        try:
            response = await self.client.request("GET", internal_user_path(user_id))
        except ServiceCallFailed as failed:
            raise ServiceUnavailable("The user directory did not answer.") from failed
        if response.status in (200, 404):
            return response.status == 200
        raise ServiceUnavailable(f"The user directory answered {response.status}.")
