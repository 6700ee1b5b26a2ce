"""Fan-out on write: each user's timeline of post keys in Redis, capped, pushed to when a followed
author posts, merged into on a follow, built from MySQL when missing. MySQL stays the truth: a
feed read loads the posts by id and keeps only those that still exist and whose author the
reader still follows, so a timeline may hold too much but never decides what is shown.

Authors with very many followers are not pushed (one post would be thousands of writes); their
posts are pulled from MySQL when a follower reads (follow_counts.posts_pulled).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import bindparam, select

from shared.lifespan import same_slot_groups
from shared.pagination import Key
from shared.reads import ReadSession
from social_service.feed.scripts import READY, WHOLE, TimelineScripts
from social_service.follows.repository import FollowsRepository
from social_service.posts.models import Post
from social_service.posts.repository import NEWEST_FIRST

logger = logging.getLogger("social_service.feed")

# Followers' timelines written per script call: bounds how long one call holds Redis.
PUSH_BATCH = 500
LATEST_POST_KEYS = (select(Post.created_at, Post.id).where(Post.author_id == bindparam("author_id"))
                    .order_by(*NEWEST_FIRST).limit(bindparam("limit")))


def member(key: Key) -> str:
    return f"{key.micros:016d}:{key.id:016d}"


def key_of(member_: str) -> Key:
    micros, _, id_ = member_.partition(":")
    return Key.from_micros(int(micros), int(id_))


@dataclass(frozen=True)
class TimelineSlice:
    keys: list[Key]
    # Nothing older than these is in the timeline: WHOLE if nothing older exists at all,
    # else older posts are only in MySQL.
    at_end: bool
    whole: bool


class Timelines:
    """The Redis side, built once in the lifespan. Its writes run after the request's commit,
    reading MySQL outside any transaction."""

    def __init__(self, redis: Redis, reads: ReadSession, *, length: int, ttl_seconds: int
                 ) -> None:
        self.redis = redis
        self.reads = reads
        self.length = length
        self.ttl_seconds = ttl_seconds
        self.scripts = TimelineScripts(redis)

    # A timeline and its generation share the user's hash tag: the scripts take both, which a
    # Redis Cluster allows only within one slot.
    @staticmethod
    def key(user_id: int) -> str:
        return f"social:timeline:{{{user_id}}}"

    @staticmethod
    def generation_key(user_id: int) -> str:
        return f"social:timeline-generation:{{{user_id}}}"

    async def read(self, user_id: int, *, before: Key | None, count: int) -> TimelineSlice | None:
        """Up to `count` keys older than `before`, newest first; None if not built."""
        upper = f"({member(before)}" if before is not None else f"({READY}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zscore(self.key(user_id), READY)
            pipe.zrange(self.key(user_id), upper, "-", desc=True, bylex=True, offset=0,
                        num=count)
            ready, members = await pipe.execute()
        if ready is None:
            return None
        whole = bool(members) and members[-1] == WHOLE
        keys = [key_of(m) for m in members if m != WHOLE]
        return TimelineSlice(keys, at_end=whole or len(members) < count, whole=whole)

    async def generation(self, user_id: int) -> str:
        return str(await self.redis.get(self.generation_key(user_id)) or "0")

    async def finish_build(self, user_id: int, generation: str, keys: Sequence[Key]) -> bool:
        """Writes what a build read from MySQL (newest first, at most `length`)."""
        whole = "1" if len(keys) < self.length else "0"
        done = await self.scripts.finish_build(
            keys=[self.key(user_id), self.generation_key(user_id)],
            args=[generation, self.length, self.ttl_seconds, whole, *map(member, keys)],
        )
        return bool(done)

    async def forget(self, user_id: int, keys: Iterable[Key]) -> None:
        members = [member(key) for key in keys]
        if members:
            await self.redis.zrem(self.key(user_id), *members)

    async def push_post(self, post: Key, author_id: int) -> None:
        follows = FollowsRepository(reads=self.reads)
        if await follows.posts_pulled(author_id):
            return
        followers = await follows.follower_ids(author_id)
        for start in range(0, len(followers), PUSH_BATCH):
            keys = [self.key(f) for f in followers[start:start + PUSH_BATCH]]
            # One call for the batch on a single Redis; on a cluster one per slot, at once.
            await asyncio.gather(*(
                self.scripts.push(keys=group, args=[member(post), self.length, self.ttl_seconds])
                for group in same_slot_groups(self.redis, keys)))

    async def merge_author(self, follower_id: int, author_id: int) -> None:
        keys = await self._latest_posts(author_id)
        complete = "1" if len(keys) < self.length else "0"
        await self.scripts.merge_author(
            keys=[self.key(follower_id), self.generation_key(follower_id)],
            args=[self.length, self.ttl_seconds, complete, *map(member, keys)],
        )

    async def forget_author(self, follower_id: int, author_id: int) -> None:
        # Reads hide them anyway (they check the follow); this only saves those reads the work.
        await self.forget(follower_id, await self._latest_posts(author_id))

    async def _latest_posts(self, author_id: int) -> list[Key]:
        rows = (await self.reads.execute(LATEST_POST_KEYS, {"author_id": author_id,
                                                             "limit": self.length})).all()
        return [Key(row["created_at"], row["id"]) for row in rows]


class TimelineChanges:
    """One request's changes to timelines, applied once its transaction committed (see
    dependencies.get_timeline_changes): before, a reader could see a post id MySQL does not have
    yet; after the response, a client reading its feed right away could miss its own change."""

    def __init__(self, timelines: Timelines) -> None:
        self.timelines = timelines
        self.pending: list[Callable[[], Any]] = []

    def post_created(self, *, post_id: int, author_id: int, created_at: datetime) -> None:
        self.pending.append(lambda: self.timelines.push_post(Key(created_at, post_id), author_id))

    def followed(self, *, follower_id: int, followee_id: int) -> None:
        self.pending.append(lambda: self.timelines.merge_author(follower_id, followee_id))

    def unfollowed(self, *, follower_id: int, followee_id: int) -> None:
        self.pending.append(lambda: self.timelines.forget_author(follower_id, followee_id))

    async def apply(self) -> None:
        for change in self.pending:
            try:
                await change()
            except Exception:
                # The rows are committed and the client gets its answer. A timeline that missed
                # this stays short of it until rebuilt from MySQL: when its key expires, or is
                # deleted (any timeline key may be deleted at any time, safely).
                logger.exception("timeline update failed")
        self.pending.clear()
