"""The revocation list: one MGET for every request waiting at that moment, each answered with
what Redis said after it asked."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.revocation import RevocationList, RevocationStateMissing
from gateway.tests.conftest import Rig
from shared.contracts import REVOCATION_EPOCH_KEY, revoked_session_key


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


async def test_without_the_epoch_key_every_waiting_request_is_refused(redis: Redis) -> None:
    # Redis lost its data: "not revoked" can no longer be told from "revocation lost".
    revocations = RevocationList(redis)
    await redis.delete(REVOCATION_EPOCH_KEY)
    try:
        results = await asyncio.gather(*(revocations.is_revoked(uuid.uuid4().hex)
                                         for _ in range(3)), return_exceptions=True)
    finally:
        await redis.set(REVOCATION_EPOCH_KEY, "1")
    assert all(isinstance(result, RevocationStateMissing) for result in results)


async def test_protected_routes_fail_closed_while_the_epoch_key_is_missing(
    rig: Rig, client: httpx.AsyncClient, redis: Redis
) -> None:
    token = {"Authorization": f"Bearer {rig.token()}"}
    await redis.delete(REVOCATION_EPOCH_KEY)
    try:
        protected = await client.get("/api/v1/users/me", headers=token)
        public = await client.get("/api/v1/products/1")
    finally:
        await redis.set(REVOCATION_EPOCH_KEY, "1")
    assert protected.status_code == 503
    assert protected.json()["code"] == "upstream_unavailable"
    assert protected.headers["retry-after"] == "1"
    assert public.status_code == 200
    assert (await client.get("/api/v1/users/me", headers=token)).status_code == 200
