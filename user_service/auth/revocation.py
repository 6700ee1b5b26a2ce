"""Publishing revoked sessions to the gateway (the key is `shared.contracts.REVOKED_SESSION_KEY`).

To revoke a session, user_service sets, on the Redis of `USER_REDIS_URL`:

    SET auth:revoked-session:{sid} 1 EX {access_token_ttl_seconds + 60}

where `sid` is the access token's `sid` claim. The gateway answers 401 `token_revoked` to any
access token whose `sid` has that key. The key only needs to outlive
the longest-lived access token of the session; the margin covers clock skew between hosts.
Refresh tokens are refused by user_service itself (the `sessions.revoked_at` column), so no new
access token can be minted for a revoked session once the key expires.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from shared.contracts import revoked_session_key

CLOCK_SKEW_MARGIN_SECONDS = 60


async def publish_revoked_sessions(
    redis: Redis, session_ids: Iterable[str], *, access_token_ttl_seconds: int
) -> None:
    ttl = access_token_ttl_seconds + CLOCK_SKEW_MARGIN_SECONDS
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.set(revoked_session_key(session_id), 1, ex=ttl)
        await pipe.execute()
