"""The feed through the gateway with every app on the Redis Cluster: timelines built, pushed to
followers in other hash slots, merged on a follow, paged while posts arrive."""

from __future__ import annotations

from gateway.tests.test_e2e_social import (
    people,
    test_activities_both_ways,
    test_follows_lists_and_their_errors,
    test_the_feed_pages_hold_still_while_posts_arrive,
)

__all__ = [
    "people",
    "test_activities_both_ways",
    "test_follows_lists_and_their_errors",
    "test_the_feed_pages_hold_still_while_posts_arrive",
]
