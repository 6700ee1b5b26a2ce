"""The newsfeed and the activity stream of a user.

The newsfeed reads the user's timeline (feed/timelines.py), loads those posts from MySQL (only
the ones that still exist and whose author is still followed), merges in the posts of followed
pulled authors, and goes on in MySQL past the timeline's oldest post. The activity stream is
read from MySQL (fan-out on read).
"""

from __future__ import annotations

from shared.pagination import Key, page_of, row_key
from shared.reads import ReadSession
from shared.schemas import Page
from social_service.activities.models import TARGET_TYPES, ActivityType
from social_service.activities.schemas import ActivityOut
from social_service.feed.repository import FeedRepository, Row
from social_service.feed.timelines import Timelines
from social_service.posts.schemas import PostOut


class FeedService:
    def __init__(self, reads: ReadSession, timelines: Timelines) -> None:
        self.feed = FeedRepository(reads=reads)
        self.timelines = timelines

    async def newsfeed(self, user_id: int, *, cursor: str | None, limit: int) -> Page[PostOut]:
        before = Key.from_cursor(cursor)
        # One more than the page, to know whether another page follows.
        rows = await self._pushed_posts(user_id, before=before, count=limit + 1)
        pulled = await self.feed.pulled_followees(user_id)
        if pulled:
            more = await self.feed.posts_by_authors(pulled, before=before, limit=limit + 1)
            by_id = {row["id"]: row for row in (*rows, *more)}
            rows = sorted(by_id.values(), key=row_key, reverse=True)[:limit + 1]
        items, next_cursor = page_of(rows, limit, row_key)
        return Page(items=[PostOut.model_validate(row) for row in items], next_cursor=next_cursor)

    async def _pushed_posts(self, user_id: int, *, before: Key | None, count: int
                            ) -> list[Row]:
        rows: list[Row] = []
        position = before
        while len(rows) < count:
            wanted = count - len(rows)
            timeline = await self.timelines.read(user_id, before=position, count=wanted)
            if timeline is None:
                await self._build(user_id)
                timeline = await self.timelines.read(user_id, before=position, count=wanted)
            if timeline is None:  # voided by a concurrent follow: this page comes from MySQL
                rows += await self.feed.newsfeed_page(user_id, before=position, limit=wanted)
                break
            if timeline.keys:
                found = await self.feed.posts_seen_by(user_id, [key.id for key in timeline.keys])
                # A key whose row is gone (or is another row now: a restored database hands
                # ids out again) is forgotten; deleted posts never come back. An unfollowed
                # author's posts only hide: the unfollow removes them, in order with a re-follow.
                gone = [key for key in timeline.keys
                        if key.id not in found or row_key(found[key.id]) != key]
                rows += [found[key.id] for key in timeline.keys
                         if key not in gone and found[key.id]["followed"]]
                await self.timelines.forget(user_id, gone)
                position = timeline.keys[-1]
            if timeline.at_end:
                if not timeline.whole:  # older posts were trimmed off: MySQL has them
                    rows += await self.feed.newsfeed_page(user_id, before=position,
                                                          limit=count - len(rows))
                break
        return rows[:count]

    async def _build(self, user_id: int) -> None:
        # The generation is read before MySQL: a follow in between voids this build.
        generation = await self.timelines.generation(user_id)
        keys = await self.feed.newsfeed_keys(user_id, limit=self.timelines.length)
        await self.timelines.finish_build(user_id, generation, keys)

    async def activities(self, user_id: int, *, cursor: str | None, limit: int
                         ) -> Page[ActivityOut]:
        rows = await self.feed.activities_page(user_id, before=Key.from_cursor(cursor),
                                               limit=limit)
        items, next_cursor = page_of(rows, limit, row_key)
        return Page(items=[
            ActivityOut(id=row["id"], actor_id=row["actor_id"], type=ActivityType(row["type"]),
                        target_type=TARGET_TYPES[ActivityType(row["type"])],
                        target_id=row["target_id"], created_at=row["created_at"])
            for row in items
        ], next_cursor=next_cursor)
