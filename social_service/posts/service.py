"""Posts: writing, editing and deleting one's own, reading anyone's, liking."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import utcnow
from shared.pagination import Key, page_of, row_key
from shared.reads import ReadSession
from shared.schemas import Page
from social_service.activities.models import ActivityType
from social_service.activities.repository import ActivitiesRepository
from social_service.posts.errors import NotPostAuthor, PostNotFound
from social_service.posts.repository import PostsRepository
from social_service.posts.schemas import PostOut


class PostEvents(Protocol):
    """Told of each post this request creates; acts once the transaction committed (the feed's
    timelines implement it: posts cannot import the feed, which builds on them)."""

    def post_created(self, *, post_id: int, author_id: int, created_at: datetime) -> None: ...


class PostsService:
    """Made with `reads` to read (no transaction) or with `session` and `events` to write."""

    def __init__(self, *, reads: ReadSession | None = None, session: AsyncSession | None = None,
                 events: PostEvents | None = None) -> None:
        self.posts = PostsRepository(reads=reads, session=session)
        self.activities = ActivitiesRepository(session=session)
        self._events = events

    @property
    def events(self) -> PostEvents:
        if self._events is None:
            raise TypeError("writing a post needs the request's timeline changes")
        return self._events

    async def create(self, author_id: int, content: str) -> PostOut:
        now = utcnow()
        post_id = await self.posts.insert(author_id=author_id, content=content, now=now)
        await self.activities.record(ActivityType.POST_CREATED, actor_id=author_id,
                                     target_id=post_id, owner_id=None, post_id=post_id,
                                     created_at=now)
        self.events.post_created(post_id=post_id, author_id=author_id, created_at=now)
        return PostOut(id=post_id, author_id=author_id, content=content, like_count=0,
                       comment_count=0, created_at=now, updated_at=now)

    async def get(self, post_id: int) -> PostOut:
        row = await self.posts.get(post_id)
        if row is None:
            raise PostNotFound()
        return PostOut.model_validate(row)

    async def list(self, *, author_id: int | None, cursor: str | None, limit: int) -> Page[PostOut]:
        rows = await self.posts.page(author_id=author_id, before=Key.from_cursor(cursor), limit=limit)
        items, next_cursor = page_of(rows, limit, row_key)
        return Page(items=[PostOut.model_validate(row) for row in items], next_cursor=next_cursor)

    async def edit(self, user_id: int, post_id: int, content: str) -> PostOut:
        await self._lock_own_post(user_id, post_id)
        await self.posts.update_content(post_id, content, now=utcnow())
        row = await self.posts.get_in_transaction(post_id)
        assert row is not None, "the post is locked by this transaction"
        return PostOut.model_validate(row)

    async def delete(self, user_id: int, post_id: int) -> None:
        await self._lock_own_post(user_id, post_id)
        await self.posts.delete(post_id)

    async def like(self, user_id: int, post_id: int) -> None:
        author_id = await self.posts.author_of(post_id, lock="update")
        if author_id is None:
            raise PostNotFound()
        now = utcnow()
        if await self.posts.add_like(post_id, user_id, now=now):
            await self.posts.add_to_like_count(post_id, +1)
            await self.activities.record(ActivityType.POST_LIKED, actor_id=user_id,
                                         target_id=post_id, owner_id=author_id, post_id=post_id,
                                         created_at=now)

    async def unlike(self, user_id: int, post_id: int) -> None:
        if await self.posts.author_of(post_id, lock="update") is None:
            raise PostNotFound()
        if await self.posts.remove_like(post_id, user_id):
            await self.posts.add_to_like_count(post_id, -1)
            await self.activities.remove(ActivityType.POST_LIKED, actor_id=user_id,
                                         target_id=post_id)

    async def _lock_own_post(self, user_id: int, post_id: int) -> None:
        author_id = await self.posts.author_of(post_id, lock="update")
        if author_id is None:
            raise PostNotFound()
        if author_id != user_id:
            raise NotPostAuthor()
