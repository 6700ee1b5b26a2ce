"""Publishing revoked sessions to the gateway (the key is `shared.contracts.REVOKED_SESSION_KEY`).

To revoke a session, user_service sets, on the Redis of `USER_REDIS_URL`:

    SET {auth:revocation}:session:<sid> 1 EX <access_token_ttl_seconds + 60>

where `sid` is the access token's `sid` claim. The gateway answers 401 `token_revoked` to any
access token whose `sid` has that key. The key only needs to outlive
the longest-lived access token of the session; the margin covers clock skew between hosts.
Refresh tokens are refused by user_service itself (the `sessions.revoked_at` column), so no new
access token can be minted for a revoked session once the key expires.

MySQL is the truth, Redis the fast gate: if Redis loses its data, the revocations are published
again from `sessions.revoked_at`, and only then is `REVOCATION_EPOCH_KEY` written; until it is,
the gateway refuses every token (auth/tasks.py keeps watch).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import utcnow
from shared.contracts import REVOCATION_EPOCH_KEY, revoked_session_key
from user_service.auth.repository import AuthRepository

CLOCK_SKEW_MARGIN_SECONDS = 60


async def publish_revoked_sessions(
    redis: Redis, session_ids: Iterable[str], *, access_token_ttl_seconds: int
) -> None:
    ttl = access_token_ttl_seconds + CLOCK_SKEW_MARGIN_SECONDS
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.set(revoked_session_key(session_id), 1, ex=ttl)
        await pipe.execute()


async def republish_revoked_sessions(
    sessionmaker: async_sessionmaker[AsyncSession], redis: Redis, *,
    access_token_ttl_seconds: int,
) -> int:
    """Every session revoked recently enough for one of its access tokens to be alive, from
    MySQL to Redis; then the epoch key. Returns how many were published."""
    since = utcnow() - timedelta(seconds=access_token_ttl_seconds + CLOCK_SKEW_MARGIN_SECONDS)
    async with sessionmaker() as session:
        session_ids = await AuthRepository(session).sessions_revoked_since(since)
    await publish_revoked_sessions(redis, session_ids,
                                   access_token_ttl_seconds=access_token_ttl_seconds)
    await redis.set(REVOCATION_EPOCH_KEY, int(time.time()))
    return len(session_ids)
