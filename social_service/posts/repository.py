"""Every SQL statement of posts and post likes. Reads select columns (no ORM objects): these are
the hot paths, and a row is all a response needs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from social_service.db import AnyRow, execute_counted, execute_insert
from social_service.keyset import Key, older_than
from social_service.posts.models import Post, PostLike

POST_COLUMNS = (Post.id, Post.author_id, Post.content, Post.like_count, Post.comment_count,
                Post.created_at, Post.updated_at)
NEWEST_FIRST = (Post.created_at.desc(), Post.id.desc())

Lock = Literal["update", "share"]


def post_key(row: AnyRow) -> Key:
    return Key(row.created_at, row.id)


class PostsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, *, author_id: int, content: str, now: datetime) -> int:
        return await execute_insert(self.session, insert(Post).values(
            author_id=author_id, content=content, like_count=0, comment_count=0,
            created_at=now, updated_at=now,
        ))

    async def get(self, post_id: int) -> AnyRow | None:
        result = await self.session.execute(select(*POST_COLUMNS).where(Post.id == post_id))
        return result.first()

    async def author_of(self, post_id: int, *, lock: Lock | None = None) -> int | None:
        """The post's author, or None if there is no such post. Every writer that touches a post
        and then one of its comments locks the post first, so no two of them deadlock."""
        query = select(Post.author_id).where(Post.id == post_id)
        if lock is not None:
            query = query.with_for_update(read=lock == "share")
        return await self.session.scalar(query)

    async def update_content(self, post_id: int, content: str, *, now: datetime) -> None:
        await self.session.execute(
            update(Post).where(Post.id == post_id).values(content=content, updated_at=now)
        )

    async def delete(self, post_id: int) -> None:
        """Its likes, comments (and theirs) and activities go with it: ON DELETE CASCADE."""
        await self.session.execute(delete(Post).where(Post.id == post_id))

    async def page(self, *, author_id: int | None, before: Key | None, limit: int) -> Sequence[AnyRow]:
        query = select(*POST_COLUMNS)
        if author_id is not None:
            query = query.where(Post.author_id == author_id)
        condition = older_than(Post.created_at, Post.id, before)
        if condition is not None:
            query = query.where(condition)
        result = await self.session.execute(query.order_by(*NEWEST_FIRST).limit(limit + 1))
        return result.all()

    async def add_like(self, post_id: int, user_id: int, *, now: datetime) -> bool:
        """True if this call added the like. IGNORE only ever meets the duplicate key: the caller
        holds the post locked, so the foreign key cannot fail."""
        statement = insert(PostLike).prefix_with("IGNORE").values(
            post_id=post_id, user_id=user_id, created_at=now)
        return await execute_counted(self.session, statement) == 1

    async def remove_like(self, post_id: int, user_id: int) -> bool:
        statement = delete(PostLike).where(PostLike.post_id == post_id, PostLike.user_id == user_id)
        return await execute_counted(self.session, statement) == 1

    async def add_to_like_count(self, post_id: int, delta: int) -> None:
        # In SQL, never read-modify-write: the row lock makes concurrent changes add up.
        await self.session.execute(
            update(Post).where(Post.id == post_id).values(like_count=Post.like_count + delta)
        )

    async def add_to_comment_count(self, post_id: int, delta: int) -> None:
        await self.session.execute(
            update(Post).where(Post.id == post_id).values(comment_count=Post.comment_count + delta)
        )
