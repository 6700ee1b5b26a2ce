"""social_service settings, read from SOCIAL_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.services import service
from shared.settings import DatastoreSettings


class Settings(DatastoreSettings):
    model_config = SettingsConfigDict(env_prefix="SOCIAL_")

    database_url: str = "mysql+asyncmy://root@127.0.0.1:3306/preorder_social"

    # Where user_service answers whether a user exists (its internal route).
    user_service_url: str = service("user").local_url
    user_service_timeout_seconds: float = Field(default=2.0, gt=0)
    # How long an answer is believed. A user once seen rarely disappears (only unverified
    # accounts are purged, after a day); a missing one may sign up any moment, so that answer
    # is kept only long enough to absorb a burst.
    user_found_cache_seconds: int = Field(default=300, gt=0)
    user_missing_cache_seconds: int = Field(default=5, gt=0)

    # Fan-out on write (feed/timelines.py): each user's timeline keeps this many newest posts
    # (55 pages of the default 20, so page 50 and the look-ahead past it are still here); older
    # pages are read from MySQL.
    feed_timeline_length: int = Field(default=1100, ge=10)
    # A timeline no followed author has pushed to for this long expires, to be rebuilt from
    # MySQL on the next read.
    feed_timeline_ttl_seconds: int = Field(default=3 * 86_400, gt=0)
    # From this many followers on, an author's posts are pulled when a feed is read instead of
    # pushed to every follower (and stay so: see follow_counts.posts_pulled).
    feed_pull_threshold: int = Field(default=10_000, ge=1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
