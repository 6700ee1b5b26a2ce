"""The rate limits' one script call per route on a Redis Cluster: a route's keys share a hash
slot, so the call is answered, not refused CROSSSLOT (which the limiter would let through)."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio.cluster import RedisCluster

from gateway.rate_limits import RateLimiter


async def test_a_batch_past_the_limits_is_refused_on_a_cluster(redis: RedisCluster) -> None:
    limiter = RateLimiter(redis, prefix=f"test-{uuid.uuid4().hex}:", window_seconds=30,
                          per_user=2, per_network=3, ipv4_prefix=24, ipv6_prefix=48)
    asks = [(route, str(user)) for user in range(1000, 1004)
            for route in ("POST /api/v1/orders", "POST /api/v1/payments")]
    answers = await asyncio.gather(*(
        limiter.retry_after(route, user_id=user, client_ip="198.51.100.7")
        for route, user in asks))
    # Per route, the network's first three pass; the fourth is past its limit.
    assert [answer is None for answer in answers] == [True] * 6 + [False] * 2
