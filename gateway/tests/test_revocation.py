"""The revocation list: one MGET for every request waiting at that moment, each answered with
what Redis said after it asked."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.revocation import RevocationList
from shared.contracts import revoked_session_key


async def test_revocation_list_answers_each_waiting_request(redis: Redis) -> None:
    revocations = RevocationList(redis)
    revoked, live = uuid.uuid4().hex, uuid.uuid4().hex
    await redis.set(revoked_session_key(revoked), "1", ex=60)
    answers = await asyncio.gather(*(revocations.is_revoked(sid) for sid in [revoked, live] * 20))
    assert answers == [True, False] * 20
    # A revocation written after the first answers is seen by the very next question.
    await redis.set(revoked_session_key(live), "1", ex=60)
    assert await revocations.is_revoked(live)


async def test_revocation_list_passes_redis_failures_to_every_waiter() -> None:
    broken = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    revocations = RevocationList(broken)
    results = await asyncio.gather(*(revocations.is_revoked(uuid.uuid4().hex) for _ in range(3)),
                                   return_exceptions=True)
    await broken.aclose()
    assert all(isinstance(result, RedisError) for result in results)
