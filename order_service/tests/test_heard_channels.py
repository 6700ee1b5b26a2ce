"""order_service's one subscription as its own Redis user (shared/redis_acl.py) hears every
channel the app listens on: one channel the user may not hear, and Redis refuses the whole
SUBSCRIBE (the tickets' answers and the sell-outs with it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis

from order_service.app import HEARD_TOPICS
from shared.broadcast import Channels, Subscription
from shared.testing.datastores import TEST_PUBSUB_PREFIX
from shared.testing.redis_acl import app_users


async def test_order_service_s_redis_user_hears_every_channel_its_subscription_does(
    redis_url: str, redis: Redis
) -> None:
    channels = Channels(TEST_PUBSUB_PREFIX)
    heard: set[str] = set()

    def hearing(topic: str) -> Callable[[str], None]:
        return lambda message: heard.add(topic)

    with app_users(redis_url, TEST_PUBSUB_PREFIX) as urls:
        subscription = Subscription(urls["order"], {channels.name(topic): hearing(topic)
                                                    for topic in HEARD_TOPICS})
        await subscription.start()
        try:
            async with asyncio.timeout(5):
                while heard != set(HEARD_TOPICS):
                    for topic in set(HEARD_TOPICS) - heard:
                        await redis.publish(channels.name(topic), "acl-test")
                    await asyncio.sleep(0.05)
        finally:
            await subscription.close()
