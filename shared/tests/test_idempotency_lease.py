"""An Idempotency-Key's claim is a lease (shared/idempotency.py): the process working on the
first attempt renews it, so a retry is told to wait for as long as that work runs, and a first
attempt whose process died stops blocking the key STALE_AFTER after its last renewal. Two
IdempotencyKeys over one real Redis stand for two replicas; the claim's age is moved back in
Redis instead of waiting for it."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis

from shared.idempotency import (
    STALE_AFTER,
    Claim,
    IdempotencyKeyInUse,
    IdempotencyKeys,
    StoredAnswer,
)


def aged(keys: IdempotencyKeys, claim: Claim) -> str:
    return keys._redis_key(claim.user_id, claim.key)


async def age_claim(redis: Redis, key: str) -> None:
    """The claim as if taken (or last renewed) longer than STALE_AFTER ago."""
    started = int(str(await redis.hget(key, "started")))
    await redis.hset(key, "started", started - int(STALE_AFTER.total_seconds() * 1000) - 1000)


async def test_a_claim_renewed_by_its_process_stays_in_use(redis: Redis) -> None:
    namespace = f"lease-{os.urandom(4).hex()}"
    working, other = (IdempotencyKeys(redis, namespace=namespace) for _ in range(2))
    claim = Claim(7, "key-1", "fp")
    assert await working.claim(claim) is None
    await age_claim(redis, aged(working, claim))
    await working.renew()  # the work still runs: its process renews the claim
    with pytest.raises(IdempotencyKeyInUse):
        await other.claim(claim)


async def test_a_claim_whose_process_died_is_taken_over_after_its_lease(redis: Redis) -> None:
    namespace = f"lease-{os.urandom(4).hex()}"
    dead, other = (IdempotencyKeys(redis, namespace=namespace) for _ in range(2))
    claim = Claim(7, "key-2", "fp")
    assert await dead.claim(claim) is None
    with pytest.raises(IdempotencyKeyInUse):
        await other.claim(claim)
    await age_claim(redis, aged(dead, claim))  # nobody renewed it
    assert await other.claim(claim) is None


async def test_an_answered_claim_is_renewed_no_more(redis: Redis) -> None:
    namespace = f"lease-{os.urandom(4).hex()}"
    keys = IdempotencyKeys(redis, namespace=namespace)
    claim = Claim(7, "key-3", "fp")
    assert await keys.claim(claim) is None
    await keys.remember(claim, StoredAnswer(201, {"id": 1}))
    await keys.renew()
    assert await keys.claim(claim) == StoredAnswer(201, {"id": 1})
    assert keys._held == {}
