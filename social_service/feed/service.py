"""The newsfeed and the activity stream of a user."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from shared.schemas import Page
from social_service.activities.models import TARGET_TYPES, ActivityType
from social_service.activities.schemas import ActivityOut
from social_service.feed.repository import FeedRepository
from social_service.keyset import Key, page_of
from social_service.posts.repository import post_key
from social_service.posts.schemas import PostOut


class FeedService:
    def __init__(self, session: AsyncSession) -> None:
        self.feed = FeedRepository(session)

    async def newsfeed(self, user_id: int, *, cursor: str | None, limit: int) -> Page[PostOut]:
        rows = await self.feed.newsfeed_page(user_id, before=Key.from_cursor(cursor), limit=limit)
        items, next_cursor = page_of(rows, limit, post_key)
        return Page(items=[PostOut.model_validate(row) for row in items], next_cursor=next_cursor)

    async def activities(self, user_id: int, *, cursor: str | None, limit: int
                         ) -> Page[ActivityOut]:
        rows = await self.feed.activities_page(user_id, before=Key.from_cursor(cursor),
                                               limit=limit)
        items, next_cursor = page_of(rows, limit, post_key)
        return Page(items=[
            ActivityOut(id=row.id, actor_id=row.actor_id, type=ActivityType(row.type),
                        target_type=TARGET_TYPES[ActivityType(row.type)],
                        target_id=row.target_id, created_at=row.created_at)
            for row in items
        ], next_cursor=next_cursor)
